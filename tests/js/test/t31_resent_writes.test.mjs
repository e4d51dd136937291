// Writes that change nothing: a batch resent after a reconnect, and a stale
// op that loses the merge. They are acknowledged at once at every level the
// write asked for (REPLICATED, PERSISTED), not after the write timeout, and
// each such op says `unchanged: true` beside `success: true`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, putOp, ts } from '../lib/hangar.mjs';

// A write timeout of several seconds: an ack that waited for it would be
// far slower than the bound the tests assert.
const TIMEOUT_MS = 6000;
const FAST_MS = 1000;

let node;
before(async () => {
  node = await startNode({
    env: { HANGAR_NO_AUTH: '1' },
    config: `[storage]\nwrite_ack_timeout_ms = ${TIMEOUT_MS}\n`,
  });
});
after(async () => {
  await node?.stop();
});

async function timedAck(c, msg) {
  const t0 = Date.now();
  c.send(msg);
  const ack = await c.expect('OP_ACK', () => true, TIMEOUT_MS * 2);
  return { ack: ack.payload, ms: Date.now() - t0 };
}

for (const level of ['PERSISTED', 'REPLICATED']) {
  test(`t31a a batch resent at ${level} is acknowledged at ${level} in milliseconds, each op unchanged`, async () => {
    const map = `r31a-${level}`;
    const ops = [1, 2, 3].map((i) => putOp(i, map, `k${i}`, { n: i }));
    ops.push({ id: '4', mapName: `${map}-or`, key: 'tags', opType: 'OR_ADD', orRecord: { value: 'x', timestamp: ts(), tag: `t-${level}` } });
    const batch = { type: 'OP_BATCH', payload: { ops, writeConcern: level } };
    const first = await connect(node);
    const { ack: a1 } = await timedAck(first, batch);
    assert.equal(a1.achievedLevel, level, JSON.stringify(a1));
    assert.ok(a1.results.every((r) => r.success && !r.unchanged), JSON.stringify(a1));
    await first.close();

    // The client reconnects and flushes the same pending ops again.
    const again = await connect(node);
    const { ack: a2, ms } = await timedAck(again, batch);
    assert.ok(ms < FAST_MS, `the resent batch took ${ms} ms (write timeout ${TIMEOUT_MS} ms)`);
    assert.equal(a2.lastId, '4');
    assert.equal(a2.achievedLevel, level, JSON.stringify(a2));
    assert.equal(a2.results.length, 4);
    for (const r of a2.results) {
      assert.deepEqual(
        { success: r.success, level: r.achievedLevel, unchanged: r.unchanged, error: r.error },
        { success: true, level, unchanged: true, error: undefined },
        JSON.stringify(r),
      );
    }
    await again.close();
  });
}

test('t31b a stale op that loses the merge is applied-and-unchanged at PERSISTED; the newer value stays', async () => {
  const c = await connect(node);
  const old = ts();
  const newer = { ...ts(), millis: old.millis + 1000 };
  const { ack: a1 } = await timedAck(c, {
    type: 'OP_BATCH',
    payload: { ops: [{ id: '10', mapName: 'r31b', key: 'k', record: { value: 'new', timestamp: newer } }], writeConcern: 'PERSISTED' },
  });
  assert.equal(a1.results[0].success, true, JSON.stringify(a1));
  // In one batch: a stale op (loses to `newer`) beside a fresh one.
  const { ack, ms } = await timedAck(c, {
    type: 'OP_BATCH',
    payload: {
      ops: [
        { id: '11', mapName: 'r31b', key: 'k', record: { value: 'old', timestamp: old } },
        putOp(12, 'r31b', 'other', 'fresh'),
      ],
      writeConcern: 'PERSISTED',
    },
  });
  assert.ok(ms < FAST_MS, `took ${ms} ms`);
  const [stale, fresh] = ack.results;
  assert.deepEqual(
    { success: stale.success, level: stale.achievedLevel, unchanged: stale.unchanged },
    { success: true, level: 'PERSISTED', unchanged: true },
    JSON.stringify(stale),
  );
  assert.deepEqual(
    { success: fresh.success, level: fresh.achievedLevel, unchanged: fresh.unchanged },
    { success: true, level: 'PERSISTED', unchanged: undefined },
  );
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'q31b', mapName: 'r31b', query: {} } });
  const resp = await c.expect('QUERY_RESP');
  const k = resp.payload.results.find((r) => r.key === 'k');
  assert.equal(k.value, 'new', 'the stale op changed nothing');
  await c.close();
});

test('t31c 16 connections resending at PERSISTED are all acknowledged well under the write timeout', async () => {
  const map = 'r31c';
  const batches = Array.from({ length: 16 }, (_, i) => ({
    type: 'OP_BATCH',
    payload: { ops: [putOp(i + 1, map, `k${i}`, i)], writeConcern: 'PERSISTED' },
  }));
  const seed = await connect(node);
  for (const b of batches) await timedAck(seed, b);
  await seed.close();
  const clients = await Promise.all(batches.map(() => connect(node)));
  const acks = await Promise.all(clients.map((c, i) => timedAck(c, batches[i])));
  const slowest = Math.max(...acks.map((a) => a.ms));
  assert.ok(slowest < FAST_MS, `slowest resent ack took ${slowest} ms`);
  assert.ok(acks.every((a) => a.ack.achievedLevel === 'PERSISTED' && a.ack.results[0].unchanged === true));
  await Promise.all(clients.map((c) => c.close()));
});
