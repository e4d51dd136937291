// Slow sockets: connections that never finish their HTTP upgrade request
// count against max_connections and are closed once the request timeout
// ([network] request_timeout_ms) has passed; then clients get in again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { startNode, connect } from '../lib/hangar.mjs';

const MAX = 30;
const TIMEOUT_MS = 1_000;
let node;
before(async () => {
  node = await startNode({
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory', HANGAR_LOG: 'info' },
    config: `[network]\nmax_connections = ${MAX}\nrequest_timeout_ms = ${TIMEOUT_MS}\n`,
  });
});
after(async () => {
  await node?.stop();
});

/** A raw TCP socket that sends half an upgrade request (no blank line)
 * and then nothing. Resolves once connected; `.ended` resolves with the
 * time the server closed it. */
function halfOpen() {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(node.port, '127.0.0.1', () => {
      s.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n');
      resolve(s);
    });
    s.ended = new Promise((r) => s.on('close', () => r(Date.now())));
    s.on('error', () => {});
    s.once('error', reject);
  });
}

test('t91 half-finished upgrades count against max_connections and are closed after the request timeout', async () => {
  const opened = Date.now();
  const slow = await Promise.all(Array.from({ length: MAX }, halfOpen));
  // Wait until the node has counted all of them in: it refuses a client.
  let refused = false;
  for (let i = 0; i < 20 && !refused; i++) {
    try {
      const c = await connect(node);
      await c.close();
      await new Promise((r) => setTimeout(r, 20));
    } catch (e) {
      refused = true;
      assert.match(String(e.message), /503|ECONNRESET|socket hang up/, e.message);
    }
  }
  assert.ok(refused, `with ${MAX} half-open sockets a client is refused: they count against max_connections`);

  // Every half-open socket is closed by the node, not before the bound.
  const ended = await Promise.race([
    Promise.all(slow.map((s) => s.ended)),
    new Promise((_, reject) => setTimeout(() => reject(new Error('half-open sockets still open 5 s after the bound')), TIMEOUT_MS + 5_000)),
  ]);
  for (const t of ended) {
    assert.ok(t - opened >= TIMEOUT_MS - 100, `closed after ${t - opened} ms, before the ${TIMEOUT_MS} ms bound`);
  }

  // And a normal client gets in again.
  const c = await connect(node);
  c.send({ type: 'PING', timestamp: 1 });
  await c.expect('PONG');
  await c.close();
  assert.match(node.stderr(), /RLIMIT_NOFILE/, 'the open-file limit is logged at start');
});

test('t91b a normal client connects while many half-finished upgrades are open below the cap', async () => {
  const slow = await Promise.all(Array.from({ length: MAX - 5 }, halfOpen));
  const c = await connect(node);
  c.send({ type: 'PING', timestamp: 2 });
  await c.expect('PONG');
  await c.close();
  await Promise.all(slow.map((s) => s.ended));
});
