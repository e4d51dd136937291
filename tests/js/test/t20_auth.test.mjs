// Auth (JWT_SECRET), the auth switches, the auth deadline and idle reaping.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, jwt, inSeconds } from '../lib/hangar.mjs';

const SECRET = 'test-secret-0123456789';
let node;
before(async () => {
  node = await startNode({
    env: { JWT_SECRET: SECRET, STORAGE_BACKEND: 'memory' },
    config: '[network]\nauth_timeout_ms = 400\nidle_timeout_ms = 1500\n',
  });
});
after(async () => {
  await node?.stop();
});

test('t20 AUTH_REQUIRED on connect; frames before AUTH are dropped; a valid token gets AUTH_ACK', async () => {
  const c = await connect(node);
  await c.expect('AUTH_REQUIRED');
  c.send({ type: 'PING', timestamp: 1 }); // before auth: dropped
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'alice', roles: ['user'], exp: inSeconds(3600) }) });
  const ack = await c.expect('AUTH_ACK');
  assert.equal(ack.userId, 'alice');
  c.send({ type: 'PING', timestamp: 2 });
  await c.expect('PONG', (m) => m.timestamp === 2);
  assert.equal(c.pending('PONG').length, 0, 'the PING sent before AUTH got no answer');
  await c.close();
});

test('t20b a later AUTH refreshes the principal; an invalid one fails and closes', async () => {
  const c = await connect(node);
  await c.expect('AUTH_REQUIRED');
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'carol', exp: inSeconds(60) }) });
  assert.equal((await c.expect('AUTH_ACK')).userId, 'carol');
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'carol2', exp: inSeconds(3600) }) });
  assert.equal((await c.expect('AUTH_ACK')).userId, 'carol2');
  c.send({ type: 'AUTH', token: jwt('wrong', { sub: 'mallory', exp: inSeconds(3600) }) });
  assert.equal((await c.expect('AUTH_FAIL')).code, 401);
  assert.equal((await c.closed).code, 1008);
});

for (const [name, token] of [
  ['a wrong signature', () => jwt('not-the-secret', { sub: 'a', exp: inSeconds(3600) })],
  ['an expired token', () => jwt(SECRET, { sub: 'a', exp: inSeconds(-60) })],
  ['a token without exp', () => jwt(SECRET, { sub: 'a' })],
  ['another algorithm', () => jwt(SECRET, { sub: 'a', exp: inSeconds(3600) }, 'HS512')],
  ['garbage', () => 'not-a-jwt'],
]) {
  test(`t21 ${name} gets AUTH_FAIL and the connection is closed`, async () => {
    const c = await connect(node);
    await c.expect('AUTH_REQUIRED');
    c.send({ type: 'AUTH', token: token() });
    const fail = await c.expect('AUTH_FAIL');
    assert.equal(fail.code, 401);
    assert.ok(fail.error.length > 0);
    const closed = await c.closed;
    assert.equal(closed.code, 1008);
  });
}

test('t22 a client that does not authenticate in time is failed and closed', async () => {
  const c = await connect(node);
  await c.expect('AUTH_REQUIRED');
  const fail = await c.expect('AUTH_FAIL', () => true, 5_000);
  assert.match(fail.error, /timed out/);
  assert.equal((await c.closed).code, 1008);
});

test('t23 an idle connection is reaped; pings keep it alive', async () => {
  const c = await connect(node);
  await c.expect('AUTH_REQUIRED');
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'bob', exp: inSeconds(60) }) });
  await c.expect('AUTH_ACK');
  // Pinging every 300 ms for 2 s (longer than the 1.5 s idle timeout) keeps it open.
  const until = Date.now() + 2_000;
  while (Date.now() < until) {
    await c.barrier();
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(c.isClosed, false);
  const closed = await Promise.race([
    c.closed,
    new Promise((_, reject) => setTimeout(() => reject(new Error('not reaped within 5 s')), 5_000)),
  ]);
  assert.equal(closed.code, 1000);
  assert.match(closed.reason, /idle/);
});

for (const [name, env] of [
  ['HANGAR_NO_AUTH=1', { HANGAR_NO_AUTH: '1' }],
  ['TOPGUN_NO_AUTH=true', { TOPGUN_NO_AUTH: 'true' }],
]) {
  test(`t24 ${name} turns auth off even with JWT_SECRET set`, async () => {
    const open = await startNode({ env: { JWT_SECRET: SECRET, STORAGE_BACKEND: 'null', ...env } });
    try {
      const c = await connect(open);
      c.send({ type: 'PING', timestamp: 5 });
      await c.expect('PONG');
      assert.equal(c.pending('AUTH_REQUIRED').length, 0);
      // A client that authenticates anyway is acknowledged.
      c.send({ type: 'AUTH', token: 'anything' });
      await c.expect('AUTH_ACK');
      await c.close();
    } finally {
      await open.stop();
    }
  });
}
