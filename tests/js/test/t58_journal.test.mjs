// The event journal: JOURNAL_READ → JOURNAL_READ_RESPONSE with PUT /
// UPDATE / DELETE entries and their previous values; JOURNAL_SUBSCRIBE
// replaying from fromSequence then following live (each entry once),
// filters, JOURNAL_UNSUBSCRIBE; retention refusing a pruned sequence by
// naming the oldest one kept; bad input answered with 400; and the journal
// replaying from a sequence after a restart on the embedded store.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, connect, putOp } from '../lib/hangar.mjs';

const env = { HANGAR_NO_AUTH: '1' };
let node;
before(async () => {
  node = await startNode({ env });
});
after(async () => {
  await node?.stop();
});

let opId = 0;
/** Writes `ops` at PERSISTED and waits for the OP_ACK: durable, so journaled. */
async function persisted(c, ops) {
  const id = String(++opId);
  const batch = ops.map((o, i) => ({ ...o, id: `${id}-${i}` }));
  c.send({ type: 'OP_BATCH', payload: { ops: batch, writeConcern: 'PERSISTED', timeout: 5000 } });
  const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === `${id}-${ops.length - 1}`);
  for (const r of ack.payload.results ?? []) assert.ok(r.success, JSON.stringify(r));
  return ack;
}

const remove = (mapName, key) => ({ mapName, key, record: null });

let reqId = 0;
async function read(c, fields) {
  const requestId = `r${++reqId}`;
  c.send({ type: 'JOURNAL_READ', requestId, ...fields });
  return c.expect('JOURNAL_READ_RESPONSE', (m) => m.requestId === requestId);
}

test('t58a JOURNAL_READ returns PUT, UPDATE and DELETE with previous values, in order, filtered', async () => {
  const c = await connect(node);
  await persisted(c, [putOp(0, 'j58a', 'k', { v: 1 })]);
  await persisted(c, [putOp(0, 'j58a', 'k', { v: 2 })]);
  await persisted(c, [remove('j58a', 'k')]);
  await persisted(c, [remove('j58a', 'never-written')]); // changes nothing: no entry
  await persisted(c, [putOp(0, 'j58a-other', 'x', 'o')]);

  const all = await read(c, { fromSequence: '0', limit: 100, mapName: 'j58a' });
  const ev = all.events;
  assert.deepEqual(ev.map((e) => e.type), ['PUT', 'UPDATE', 'DELETE']);
  assert.deepEqual(ev.map((e) => e.key), ['k', 'k', 'k']);
  assert.deepEqual([ev[0].value, ev[0].previousValue], [{ v: 1 }, undefined]);
  assert.deepEqual([ev[1].value, ev[1].previousValue], [{ v: 2 }, { v: 1 }]);
  assert.deepEqual([ev[2].value, ev[2].previousValue], [undefined, { v: 2 }]);
  const seqs = ev.map((e) => BigInt(e.sequence));
  assert.ok(seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1n), `dense: ${seqs}`);
  assert.equal(typeof ev[0].sequence, 'string', 'sequences travel as decimal strings');
  assert.equal(ev[0].nodeId, 'node-1');
  assert.equal(typeof ev[0].timestamp.millis, 'number');
  assert.equal(all.hasMore, false);

  // fromSequence is inclusive; limit and hasMore.
  const page = await read(c, { fromSequence: ev[1].sequence, limit: 1, mapName: 'j58a' });
  assert.deepEqual(page.events.map((e) => e.sequence), [ev[1].sequence]);
  assert.equal(page.hasMore, true);
  const other = await read(c, { fromSequence: '0', mapName: 'j58a-other' });
  assert.deepEqual(other.events.map((e) => [e.type, e.key, e.value]), [['PUT', 'x', 'o']]);
  assert.equal(BigInt(other.events[0].sequence), seqs[2] + 1n, 'the no-op remove took no number');
  await c.close();
});

test('t58b JOURNAL_SUBSCRIBE replays from fromSequence, then follows live, once each, until unsubscribed', async () => {
  const w = await connect(node);
  await persisted(w, [putOp(0, 'j58b', 'a', 1)]);
  await persisted(w, [putOp(0, 'j58b', 'b', 2)]);
  const before = await read(w, { fromSequence: '0', mapName: 'j58b' });
  const from = before.events[1].sequence; // the second entry

  const s = await connect(node);
  s.send({ type: 'JOURNAL_SUBSCRIBE', requestId: 'sub-1', fromSequence: from, mapName: 'j58b' });
  const deletes = await connect(node);
  deletes.send({ type: 'JOURNAL_SUBSCRIBE', requestId: 'sub-d', mapName: 'j58b', types: ['DELETE'] });
  await s.barrier();
  await deletes.barrier();
  await persisted(w, [putOp(0, 'j58b', 'a', 3)]);
  await persisted(w, [remove('j58b', 'b')]);
  await persisted(w, [putOp(0, 'j58b-unrelated', 'z', 0)]);

  const got = [];
  for (let i = 0; i < 3; i++) got.push((await s.expect('JOURNAL_EVENT')).event);
  assert.deepEqual(
    got.map((e) => [e.type, e.key, e.value, e.previousValue]),
    [
      ['PUT', 'b', 2, undefined],
      ['UPDATE', 'a', 3, 1],
      ['DELETE', 'b', undefined, 2],
    ],
  );
  assert.equal(got[0].sequence, from, 'the replay starts at fromSequence');
  const d = await deletes.expect('JOURNAL_EVENT');
  assert.deepEqual([d.event.type, d.event.key], ['DELETE', 'b']);
  await s.barrier();
  await deletes.barrier();
  assert.equal(s.pending('JOURNAL_EVENT').length, 0, 'no duplicates, nothing of other maps');
  assert.equal(deletes.pending('JOURNAL_EVENT').length, 0, 'only DELETE entries');

  s.send({ type: 'JOURNAL_UNSUBSCRIBE', subscriptionId: 'sub-1' });
  await s.barrier();
  await persisted(w, [putOp(0, 'j58b', 'a', 4)]);
  await deletes.barrier();
  await s.barrier();
  assert.equal(s.pending('JOURNAL_EVENT').length, 0, 'nothing after JOURNAL_UNSUBSCRIBE');
  for (const c of [w, s, deletes]) await c.close();
});

test('t58c a pruned fromSequence is refused naming the oldest kept; bad input is a 400 naming the field', async () => {
  const small = await startNode({ env, config: '[storage]\njournal_capacity = 3\n' });
  try {
    const c = await connect(small);
    for (let i = 1; i <= 5; i++) await persisted(c, [putOp(0, 'j58c', `k${i}`, i)]);
    const kept = await read(c, { fromSequence: '0' });
    assert.deepEqual(kept.events.map((e) => e.sequence), ['3', '4', '5']);
    assert.deepEqual([kept.oldestSequence, kept.latestSequence], ['3', '5']);

    const gone = await read(c, { fromSequence: '1' });
    assert.equal(gone.code, 404);
    assert.match(gone.error, /sequence 1 was pruned.*oldest available is 3/);
    assert.deepEqual(gone.events, []);

    c.send({ type: 'JOURNAL_SUBSCRIBE', requestId: 'late', fromSequence: '2' });
    const err = await c.expect('ERROR');
    assert.equal(err.payload.code, 404);
    assert.match(err.payload.message, /late.*oldest available is 3/);
    await persisted(c, [putOp(0, 'j58c', 'k6', 6)]);
    await c.barrier();
    assert.equal(c.pending('JOURNAL_EVENT').length, 0, 'a refused subscription delivers nothing');

    const bad = await read(c, { fromSequence: 'abc' });
    assert.equal(bad.code, 400);
    assert.match(bad.error, /fromSequence is "abc"; expected a decimal sequence number/);
    const badType = await read(c, { fromSequence: '0', types: ['PUTS'] });
    assert.equal(badType.code, 400);
    assert.match(badType.error, /unknown journal event type "PUTS"/);
    await c.close();
  } finally {
    await small.stop();
  }
});

test('t58d the journal replays from a sequence after a restart', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hangar-js-journal-'));
  try {
    const first = await startNode({ env, dataDir });
    let seqs;
    try {
      const c = await connect(first);
      await persisted(c, [putOp(0, 'j58d', 'k', 'one')]);
      await persisted(c, [putOp(0, 'j58d', 'k', 'two')]);
      await persisted(c, [putOp(0, 'j58d', 'k', 'three')]);
      seqs = (await read(c, { fromSequence: '0' })).events.map((e) => e.sequence);
      assert.equal(seqs.length, 3);
      await c.close();
    } finally {
      await first.stop();
    }
    const second = await startNode({ env, dataDir });
    try {
      const c = await connect(second);
      c.send({ type: 'JOURNAL_SUBSCRIBE', requestId: 'after-restart', fromSequence: seqs[1] });
      const replayed = [await c.expect('JOURNAL_EVENT'), await c.expect('JOURNAL_EVENT')].map((m) => m.event);
      assert.deepEqual(
        replayed.map((e) => [e.sequence, e.type, e.value, e.previousValue]),
        [
          [seqs[1], 'UPDATE', 'two', 'one'],
          [seqs[2], 'UPDATE', 'three', 'two'],
        ],
      );
      await persisted(c, [putOp(0, 'j58d', 'k', 'four')]);
      const live = (await c.expect('JOURNAL_EVENT')).event;
      assert.equal(BigInt(live.sequence), BigInt(seqs[2]) + 1n, 'numbering continues after the restart');
      assert.deepEqual([live.value, live.previousValue], ['four', 'three']);
      await c.close();
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
