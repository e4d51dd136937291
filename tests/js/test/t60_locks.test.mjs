// Locks through the cluster module's lock manager: grant with fencing
// tokens that only go up, refusal when busy, release, TTL expiry, release
// on disconnect, ttl 0 refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { memoryNode, connect } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

let rid = 0;
async function request(c, name, ttl) {
  const requestId = `r${++rid}`;
  const payload = ttl === undefined ? { requestId, name } : { requestId, name, ttl };
  c.send({ type: 'LOCK_REQUEST', payload });
  return c.expect(['LOCK_GRANTED', 'LOCK_RELEASED'], (m) => m.payload.requestId === requestId);
}
async function release(c, name, fencingToken) {
  const requestId = `r${++rid}`;
  c.send({ type: 'LOCK_RELEASE', payload: { requestId, name, fencingToken } });
  return (await c.expect('LOCK_RELEASED', (m) => m.payload.requestId === requestId)).payload.success;
}
/** Asks for `name` every 100 ms until granted (bounded). */
async function acquireEventually(c, name, ms = 8_000) {
  const until = Date.now() + ms;
  for (;;) {
    const r = await request(c, name, 5_000);
    if (r.type === 'LOCK_GRANTED') return r;
    if (Date.now() > until) throw new Error(`${name} not granted within ${ms} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

test('t60 a lock is granted with a fencing token, refused while held, and released', async () => {
  const a = await connect(node);
  const b = await connect(node);
  const g = await request(a, 'l60');
  assert.equal(g.type, 'LOCK_GRANTED');
  assert.equal(g.payload.name, 'l60');
  assert.ok(Number(g.payload.fencingToken) > 0);
  const busy = await request(b, 'l60', 5_000);
  assert.deepEqual({ type: busy.type, success: busy.payload.success }, { type: 'LOCK_RELEASED', success: false });
  assert.equal(await release(b, 'l60', g.payload.fencingToken), false, 'not the holder');
  assert.equal(await release(a, 'l60', Number(g.payload.fencingToken) + 1), false, 'wrong token');
  assert.equal(await release(a, 'l60', g.payload.fencingToken), true);
  const g2 = await request(b, 'l60', 5_000);
  assert.equal(g2.type, 'LOCK_GRANTED');
  assert.ok(Number(g2.payload.fencingToken) > Number(g.payload.fencingToken));
  await a.close();
  await b.close();
});

test('t61 fencing tokens strictly increase per name, also after the lock went idle', async () => {
  const a = await connect(node);
  let last = 0;
  for (let i = 0; i < 10; i++) {
    const g = await request(a, 'l61', 2_000);
    assert.equal(g.type, 'LOCK_GRANTED');
    const t = Number(g.payload.fencingToken);
    assert.ok(t > last, `round ${i}: ${t} <= ${last}`);
    last = t;
    assert.equal(await release(a, 'l61', g.payload.fencingToken), true);
  }
  await a.close();
});

test('t62 ttl 0 is refused; a request without ttl is granted (default lease)', async () => {
  const a = await connect(node);
  const z = await request(a, 'l62', 0);
  assert.deepEqual({ type: z.type, success: z.payload.success }, { type: 'LOCK_RELEASED', success: false });
  const g = await request(a, 'l62');
  assert.equal(g.type, 'LOCK_GRANTED');
  await a.close();
});

test('t63 a lease that runs out is released', async () => {
  const a = await connect(node);
  const b = await connect(node);
  const g = await request(a, 'l63', 1_000); // the shortest lease
  assert.equal(g.type, 'LOCK_GRANTED');
  assert.equal((await request(b, 'l63', 5_000)).type, 'LOCK_RELEASED');
  const g2 = await acquireEventually(b, 'l63');
  assert.ok(Number(g2.payload.fencingToken) > Number(g.payload.fencingToken));
  await a.close();
  await b.close();
});

test('t64 a holder that disconnects releases its locks', async () => {
  const a = await connect(node);
  const b = await connect(node);
  const g = await request(a, 'l64', 300_000);
  assert.equal(g.type, 'LOCK_GRANTED');
  await a.close();
  // Freed by the disconnect, long before the 300 s lease would end.
  const g2 = await acquireEventually(b, 'l64', 5_000);
  assert.ok(Number(g2.payload.fencingToken) > Number(g.payload.fencingToken));
  await b.close();
});
