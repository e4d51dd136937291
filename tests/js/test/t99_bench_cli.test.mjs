// `hangar bench`, the load generator, driving a node over the wire protocol.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { memoryNode, startNode, jwt, inSeconds, HANGAR_BIN } from '../lib/hangar.mjs';

const run = promisify(execFile);
let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

test('t99 hangar bench prints its conditions, ops/s and ack latency percentiles', async () => {
  const { stdout } = await run(
    HANGAR_BIN,
    ['bench', '--url', node.url, '--connections', '2', '--batch', '10', '--value-size', '32', '--concern', 'APPLIED', '--ops', '400'],
    { timeout: 60_000 },
  );
  assert.match(stdout, /connections=2 batch=10 value_size=32B concern=APPLIED stop=400 ops/);
  const ran = stdout.match(/(\d+) ops acked, (\d+) failed or shed/);
  assert.ok(ran, stdout);
  assert.ok(Number(ran[1]) >= 400, stdout);
  assert.equal(Number(ran[2]), 0, stdout);
  assert.match(stdout, /throughput\s+\d+ ops\/s/);
  assert.match(stdout, /op ack\s+p50 [\d.]+ ms\s+p99 [\d.]+ ms\s+max [\d.]+ ms/);
});

test('t99b hangar bench refuses an unknown concern', async () => {
  await assert.rejects(run(HANGAR_BIN, ['bench', '--url', node.url, '--concern', 'SOMETIMES', '--ops', '1']), (e) => {
    assert.equal(e.code, 2);
    assert.match(e.stderr, /--concern/);
    return true;
  });
});

test('t99c hangar bench authenticates with --token and says so when a token is missing', async () => {
  const secret = 'bench-secret';
  const secured = await startNode({ env: { JWT_SECRET: secret, STORAGE_BACKEND: 'memory' } });
  try {
    const token = jwt(secret, { sub: 'bench', exp: inSeconds(600) });
    const { stdout } = await run(HANGAR_BIN, ['bench', '--url', secured.url, '--ops', '100', '--batch', '10', '--token', token], { timeout: 60_000 });
    assert.match(stdout, /100 ops acked, 0 failed or shed/);
    await assert.rejects(run(HANGAR_BIN, ['bench', '--url', secured.url, '--ops', '10']), (e) => {
      assert.match(e.stderr, /requires authentication; pass --token/);
      return true;
    });
  } finally {
    await secured.stop();
  }
});
