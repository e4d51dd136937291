// Auth (JWT_SECRET), the auth switches, the auth deadline and idle reaping;
// every claim that limits a token (exp, nbf), also once connected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, jwt, inSeconds, putOp } from '../lib/hangar.mjs';

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
  ['a token whose nbf lies in the future', () => jwt(SECRET, { sub: 'a', exp: inSeconds(3600), nbf: inSeconds(600) })],
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

test('t21b a token whose nbf lies in the future is refused with a reason saying so; one past its nbf is accepted', async () => {
  const c = await connect(node);
  await c.expect('AUTH_REQUIRED');
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'a', exp: inSeconds(3600), nbf: inSeconds(600) }) });
  assert.match((await c.expect('AUTH_FAIL')).error, /not valid yet/);
  assert.equal((await c.closed).code, 1008);
  const d = await connect(node);
  await d.expect('AUTH_REQUIRED');
  d.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'a', exp: inSeconds(3600), nbf: inSeconds(-1) }) });
  await d.expect('AUTH_ACK');
  await d.close();
});

/** A connection authenticated with a token that expires in 1-2 s. */
async function expiring() {
  const c = await connect(node);
  await c.expect('AUTH_REQUIRED');
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'eve', exp: inSeconds(2) }) });
  await c.expect('AUTH_ACK');
  return c;
}

test('t28 when its token expires a connection is asked to authenticate again and serves nothing until it does', async () => {
  const c = await expiring();
  c.send({ type: 'CLIENT_OP', payload: putOp('before', 'a28', 'k', 1) });
  assert.equal((await c.expect('OP_ACK')).payload.results[0].success, true);
  // Keep the connection busy so that idle reaping plays no part.
  const pinger = setInterval(() => c.send({ type: 'PING', timestamp: 1 }), 300);
  try {
    const again = await c.expect('AUTH_REQUIRED', () => true, 5_000);
    assert.match(again.reason, /expired/);
  } finally {
    clearInterval(pinger);
  }
  c.take('PONG');
  c.send({ type: 'CLIENT_OP', payload: putOp('after', 'a28', 'k2', 2) }); // dropped: not authenticated
  c.send({ type: 'AUTH', token: jwt(SECRET, { sub: 'eve', exp: inSeconds(3600) }) });
  await c.expect('AUTH_ACK');
  await c.barrier();
  assert.equal(c.pending('OP_ACK').length, 0, 'the write sent with an expired token got no answer');
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'q', mapName: 'a28', query: {} } });
  const resp = await c.expect('QUERY_RESP');
  assert.deepEqual(resp.payload.results.map((r) => r.key), ['k'], 'and was not applied');
  await c.close();
});

test('t29 a connection whose token expired and that does not authenticate again is failed and closed', async () => {
  const c = await expiring();
  const pinger = setInterval(() => c.send({ type: 'PING', timestamp: 1 }), 200);
  try {
    assert.match((await c.expect('AUTH_REQUIRED', () => true, 5_000)).reason, /expired/);
    assert.match((await c.expect('AUTH_FAIL', () => true, 5_000)).error, /timed out/);
    assert.equal((await c.closed).code, 1008);
  } finally {
    clearInterval(pinger);
  }
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
