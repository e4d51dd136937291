// PN counters: COUNTER_REQUEST → COUNTER_RESPONSE, COUNTER_SYNC → the merged
// state as COUNTER_UPDATE to the syncing connection and every other
// listener. The state is per-writer increments and decrements merged by
// maximum, read in both spellings ({p, n} and the client's {positive,
// negative}) and written in both; it is kept like a map and survives a
// restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryNode, startNode, connect, putOp } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

const sum = (m) => Object.values(m ?? {}).reduce((a, b) => a + b, 0);
const valueOf = (state) => sum(state.positive) - sum(state.negative);

function assertBothSpellings(state) {
  assert.deepEqual(state.p, state.positive, JSON.stringify(state));
  assert.deepEqual(state.n, state.negative, JSON.stringify(state));
}

test('t75a COUNTER_REQUEST for a new counter answers COUNTER_RESPONSE with an empty state', async () => {
  const c = await connect(node);
  c.send({ type: 'COUNTER_REQUEST', payload: { name: 'c75a' } });
  const r = await c.expect('COUNTER_RESPONSE');
  assert.equal(r.payload.name, 'c75a');
  assert.deepEqual(r.payload.state, { p: {}, n: {}, positive: {}, negative: {} });
  await c.close();
});

test('t75b a counter incremented and decremented from two connections converges on both', async () => {
  const a = await connect(node);
  const b = await connect(node);
  b.send({ type: 'COUNTER_REQUEST', payload: { name: 'likes' } });
  await b.expect('COUNTER_RESPONSE');

  // The real client's spelling.
  a.send({ type: 'COUNTER_SYNC', payload: { name: 'likes', state: { positive: { 'client-a': 3 }, negative: {} } } });
  const own = await a.expect('COUNTER_UPDATE');
  assert.equal(valueOf(own.payload.state), 3);
  assertBothSpellings(own.payload.state);
  const seenByB = await b.expect('COUNTER_UPDATE');
  assert.equal(valueOf(seenByB.payload.state), 3);

  // The schema's spelling, fractional totals.
  b.send({ type: 'COUNTER_SYNC', payload: { name: 'likes', state: { p: { 'client-b': 2.5 }, n: { 'client-b': 1 } } } });
  const bOwn = await b.expect('COUNTER_UPDATE');
  const seenByA = await a.expect('COUNTER_UPDATE');
  assert.equal(valueOf(bOwn.payload.state), 4.5);
  assert.deepEqual(seenByA.payload.state, bOwn.payload.state, 'both hold the same state');

  // A stale or repeated sync lowers nothing and tells nobody.
  a.send({ type: 'COUNTER_SYNC', payload: { name: 'likes', state: { positive: { 'client-a': 1 }, negative: {} } } });
  const stale = await a.expect('COUNTER_UPDATE');
  assert.equal(valueOf(stale.payload.state), 4.5);
  await b.barrier();
  assert.equal(b.pending('COUNTER_UPDATE').length, 0, 'an unchanged state is not pushed');

  // Concurrent increments from both sides.
  for (let i = 1; i <= 5; i++) {
    a.send({ type: 'COUNTER_SYNC', payload: { name: 'likes', state: { positive: { 'client-a': 3 + i }, negative: {} } } });
    b.send({ type: 'COUNTER_SYNC', payload: { name: 'likes', state: { positive: { 'client-b': 2.5 + i }, negative: { 'client-b': 1 } } } });
  }
  // Whichever sync the node merged last, its result reaches both
  // connections (as the answer to one, pushed to the other).
  const final = 8 + 7.5 - 1;
  const isFinal = (m) => valueOf(m.payload.state) === final;
  const sa = (await a.expect('COUNTER_UPDATE', isFinal)).payload.state;
  const sb = (await b.expect('COUNTER_UPDATE', isFinal)).payload.state;
  assert.deepEqual(sa, sb, 'both converge');
  for (const c of [a, b]) {
    c.send({ type: 'COUNTER_REQUEST', payload: { name: 'likes' } });
    assert.deepEqual((await c.expect('COUNTER_RESPONSE')).payload.state, sa);
  }
  await a.close();
  await b.close();
});

test('t75c a malformed state or name gets ERROR 400 and changes nothing; the reserved map refuses client writes', async () => {
  const c = await connect(node);
  c.send({ type: 'COUNTER_SYNC', payload: { name: 'c75c', state: { positive: { x: -1 } } } });
  const e1 = await c.expect('ERROR');
  assert.equal(e1.payload.code, 400);
  assert.match(e1.payload.message, /not negative/);
  c.send({ type: 'COUNTER_SYNC', payload: { name: 'c75c', state: [1, 2] } });
  assert.match((await c.expect('ERROR')).payload.message, /expected a map/);
  c.send({ type: 'COUNTER_REQUEST', payload: { name: '' } });
  assert.match((await c.expect('ERROR')).payload.message, /invalid counter name/);
  c.send({ type: 'COUNTER_REQUEST', payload: { name: 'c75c' } });
  const r = await c.expect('COUNTER_RESPONSE');
  assert.equal(valueOf(r.payload.state), 0);
  c.send({ type: 'CLIENT_OP', payload: putOp(1, '__hangar_counters', 'c75c', { p: { x: 100 } }) });
  const rej = await c.expect('OP_REJECTED');
  assert.equal(rej.payload.code, 403);
  assert.match(rej.payload.reason, /reserved/);
  await c.close();
});

test('t75d a counter survives a restart of a node on the embedded store', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hangar-js-counters-'));
  const env = { HANGAR_NO_AUTH: '1' };
  try {
    const first = await startNode({ env, dataDir });
    try {
      const c = await connect(first);
      c.send({ type: 'COUNTER_SYNC', payload: { name: 'visits', state: { positive: { w1: 7 }, negative: { w1: 2 } } } });
      await c.expect('COUNTER_UPDATE');
      c.send({ type: 'COUNTER_SYNC', payload: { name: 'visits', state: { p: { w2: 4 }, n: {} } } });
      const u = await c.expect('COUNTER_UPDATE');
      assert.equal(valueOf(u.payload.state), 9);
      await c.close();
    } finally {
      await first.stop();
    }
    const second = await startNode({ env, dataDir });
    try {
      const d = await connect(second);
      d.send({ type: 'COUNTER_REQUEST', payload: { name: 'visits' } });
      const r = await d.expect('COUNTER_RESPONSE');
      assert.deepEqual(r.payload.state.positive, { w1: 7, w2: 4 });
      assert.deepEqual(r.payload.state.negative, { w1: 2 });
      // And it keeps merging from there.
      d.send({ type: 'COUNTER_SYNC', payload: { name: 'visits', state: { positive: { w1: 8 }, negative: {} } } });
      assert.equal(valueOf((await d.expect('COUNTER_UPDATE')).payload.state), 10);
      await d.close();
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
