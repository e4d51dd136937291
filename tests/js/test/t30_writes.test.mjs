// Writes: CLIENT_OP / OP_BATCH for LWW and OR ops, OP_ACK with per-op
// results honouring writeConcern and timeout, OP_REJECTED, and SERVER_EVENT
// to the other subscribers of a map, never back to the writer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryNode, startNode, connect, putOp, ts } from '../lib/hangar.mjs';

const LEVELS = ['FIRE_AND_FORGET', 'MEMORY', 'APPLIED', 'REPLICATED', 'PERSISTED'];
const atLeast = (got, want) => LEVELS.indexOf(got) >= LEVELS.indexOf(want);

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

test('t30 CLIENT_OP put is acknowledged with OP_ACK {lastId, achievedLevel, results}', async () => {
  const c = await connect(node);
  c.send({ type: 'CLIENT_OP', payload: putOp(101, 'w30', 'k1', { name: 'Ann' }) });
  const ack = await c.expect('OP_ACK');
  assert.equal(ack.payload.lastId, '101');
  assert.ok(atLeast(ack.payload.achievedLevel, 'MEMORY'), ack.payload.achievedLevel);
  assert.equal(ack.payload.results.length, 1);
  assert.deepEqual(
    { opId: ack.payload.results[0].opId, success: ack.payload.results[0].success },
    { opId: '101', success: true },
  );
  await c.close();
});

test('t31 OP_BATCH gets one OP_ACK with a result per op at the requested level', async () => {
  const c = await connect(node);
  const ops = [1, 2, 3].map((i) => putOp(200 + i, 'w31', `k${i}`, i));
  ops[1].writeConcern = 'MEMORY'; // an op's own concern overrides the batch's
  c.send({ type: 'OP_BATCH', payload: { ops, writeConcern: 'APPLIED', timeout: 2000 } });
  const ack = await c.expect('OP_ACK');
  assert.equal(ack.payload.lastId, '203');
  const r = ack.payload.results;
  assert.deepEqual(r.map((x) => x.opId), ['201', '202', '203']);
  assert.ok(r.every((x) => x.success), JSON.stringify(r));
  assert.ok(atLeast(r[0].achievedLevel, 'APPLIED') && atLeast(r[2].achievedLevel, 'APPLIED'));
  assert.ok(atLeast(r[1].achievedLevel, 'MEMORY'));
  await c.close();
});

test('t32 REMOVE (record null or opType REMOVE) is acknowledged', async () => {
  const c = await connect(node);
  c.send({ type: 'CLIENT_OP', payload: putOp(301, 'w32', 'gone', 'x') });
  await c.expect('OP_ACK', (m) => m.payload.lastId === '301');
  c.send({ type: 'CLIENT_OP', payload: { id: '302', mapName: 'w32', key: 'gone', record: null } });
  const a = await c.expect('OP_ACK', (m) => m.payload.lastId === '302');
  assert.equal(a.payload.results[0].success, true);
  c.send({ type: 'CLIENT_OP', payload: { id: '303', mapName: 'w32', key: 'gone', opType: 'REMOVE' } });
  const b = await c.expect('OP_ACK', (m) => m.payload.lastId === '303');
  assert.equal(b.payload.results[0].success, true);
  await c.close();
});

test('t33 a CLIENT_OP that cannot be applied gets OP_REJECTED with a reason and code', async () => {
  const c = await connect(node);
  c.send({ type: 'CLIENT_OP', payload: { id: '401', mapName: 'w33', key: 'k' } }); // no record at all
  const rej = await c.expect('OP_REJECTED');
  assert.equal(rej.payload.opId, '401');
  assert.equal(rej.payload.code, 400);
  assert.match(rej.payload.reason, /no record/);
  c.send({ type: 'CLIENT_OP', payload: putOp(402, '', 'k', 1) }); // empty map name
  const rej2 = await c.expect('OP_REJECTED');
  assert.equal(rej2.payload.opId, '402');
  await c.close();
});

test('t34 an OP_BATCH with a bad op reports it as a failed result and applies the rest', async () => {
  const c = await connect(node);
  const ops = [putOp(501, 'w34', 'a', 1), { id: '502', mapName: 'w34', key: 'b' }, putOp(503, 'w34', 'c', 3)];
  c.send({ type: 'OP_BATCH', payload: { ops } });
  const ack = await c.expect('OP_ACK');
  const [a, b, d] = ack.payload.results;
  assert.equal(a.success, true);
  assert.equal(b.success, false);
  assert.equal(b.achievedLevel, 'FIRE_AND_FORGET');
  assert.ok(b.error.length > 0);
  assert.equal(d.success, true);
  assert.equal(ack.payload.achievedLevel, 'FIRE_AND_FORGET', 'the batch as a whole reached only the lowest level');
  await c.close();
});

test('t35 OR_ADD and OR_REMOVE are acknowledged', async () => {
  const c = await connect(node);
  const t = ts();
  const tag = `${t.millis}:${t.counter}:${t.nodeId}`;
  c.send({
    type: 'CLIENT_OP',
    payload: { id: '601', mapName: 'w35-or', key: 'tags', opType: 'OR_ADD', orRecord: { value: 'red', timestamp: t, tag } },
  });
  const add = await c.expect('OP_ACK', (m) => m.payload.lastId === '601');
  assert.equal(add.payload.results[0].success, true, JSON.stringify(add.payload));
  c.send({ type: 'CLIENT_OP', payload: { id: '602', mapName: 'w35-or', key: 'tags', opType: 'OR_REMOVE', orTag: tag } });
  const rm = await c.expect('OP_ACK', (m) => m.payload.lastId === '602');
  assert.equal(rm.payload.results[0].success, true, JSON.stringify(rm.payload));
  await c.close();
});

test('t36 two clients see each other\'s writes as SERVER_EVENT; the writer gets no echo', async () => {
  const a = await connect(node);
  const b = await connect(node);
  for (const [c, q] of [[a, 'qa'], [b, 'qb']]) {
    c.send({ type: 'QUERY_SUB', payload: { queryId: q, mapName: 'w36', query: {} } });
    const resp = await c.expect('QUERY_RESP');
    assert.equal(resp.payload.error, undefined, JSON.stringify(resp.payload));
  }
  a.send({ type: 'CLIENT_OP', payload: putOp(701, 'w36', 'from-a', { by: 'a' }) });
  await a.expect('OP_ACK');
  const evB = await b.expect('SERVER_EVENT');
  assert.deepEqual(
    { mapName: evB.payload.mapName, eventType: evB.payload.eventType, key: evB.payload.key, value: evB.payload.record.value },
    { mapName: 'w36', eventType: 'PUT', key: 'from-a', value: { by: 'a' } },
  );
  b.send({ type: 'CLIENT_OP', payload: { id: '702', mapName: 'w36', key: 'from-a', record: null } });
  await b.expect('OP_ACK');
  const evA = await a.expect('SERVER_EVENT');
  assert.equal(evA.payload.eventType, 'REMOVE');
  assert.equal(evA.payload.record.value, null);
  await a.barrier();
  await b.barrier();
  assert.equal(a.pending('SERVER_EVENT').length, 0, 'a got no echo of its own write');
  assert.equal(b.pending('SERVER_EVENT').length, 0, 'b got no echo of its own write');
  await a.close();
  await b.close();
});

test('t37 a connection without a live query on the map gets no SERVER_EVENT', async () => {
  const a = await connect(node);
  const b = await connect(node);
  b.send({ type: 'QUERY_SUB', payload: { queryId: 'other', mapName: 'w37-other', query: {} } });
  await b.expect('QUERY_RESP');
  a.send({ type: 'CLIENT_OP', payload: putOp(801, 'w37', 'k', 1) });
  await a.expect('OP_ACK');
  await b.barrier();
  assert.equal(b.pending('SERVER_EVENT').length, 0);
  await a.close();
  await b.close();
});

test('t38 an op whose write concern is not reached within its timeout fails with the reason', async () => {
  // timeout 0: the deadline passes before the commit can make the write
  // durable, so PERSISTED is not reached; the MEMORY op beside it succeeds.
  const c = await connect(node);
  c.send({
    type: 'OP_BATCH',
    payload: { ops: [putOp(901, 'w38', 'k', 1, { writeConcern: 'PERSISTED', timeout: 0 }), putOp(902, 'w38', 'k2', 2)] },
  });
  const ack = await c.expect('OP_ACK');
  const [p, m] = ack.payload.results;
  assert.equal(p.success, false, JSON.stringify(p));
  assert.notEqual(p.achievedLevel, 'PERSISTED');
  assert.match(p.error, /PERSISTED/);
  assert.equal(m.success, true, 'the MEMORY op of the same batch succeeds');
  assert.ok(!atLeast(ack.payload.achievedLevel, 'PERSISTED'), 'the batch did not reach PERSISTED');
  await c.close();
});

test('t39 FIRE_AND_FORGET ops are still acknowledged so the client can clear them', async () => {
  const c = await connect(node);
  c.send({ type: 'OP_BATCH', payload: { ops: [putOp(1001, 'w39', 'k', 1)], writeConcern: 'FIRE_AND_FORGET' } });
  const ack = await c.expect('OP_ACK');
  assert.equal(ack.payload.lastId, '1001');
  assert.equal(ack.payload.results[0].success, true);
  await c.close();
});

test('t39b with durable persistence PERSISTED is reached', async () => {
  const durable = await startNode({ env: { HANGAR_NO_AUTH: '1' } });
  try {
    const c = await connect(durable);
    c.send({ type: 'OP_BATCH', payload: { ops: [putOp(1101, 'w39b', 'k', 1)], writeConcern: 'PERSISTED', timeout: 5000 } });
    const ack = await c.expect('OP_ACK');
    assert.deepEqual(
      { success: ack.payload.results[0].success, level: ack.payload.achievedLevel },
      { success: true, level: 'PERSISTED' },
    );
    await c.close();
  } finally {
    await durable.stop();
  }
});

test('t39c the storage plugin\'s metrics reach the host\'s /metrics: map size, ops, commits, ack levels, loads', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hangar-js-metrics-'));
  const env = { HANGAR_NO_AUTH: '1' };
  const scrape = async (node, until) => {
    // The ack counter is reported right after the ack resolves: poll briefly.
    let text = '';
    for (let i = 0; i < 50; i++) {
      text = await (await fetch(`${node.http}/metrics`)).text();
      if (text.includes(until)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return (re) => {
      const m = text.match(re);
      assert.ok(m, `no ${re} in\n${text}`);
      return Number(m[1]);
    };
  };
  try {
    const first = await startNode({ env, dataDir });
    try {
      const c = await connect(first);
      const ops = [1, 2, 3].map((i) => putOp(1200 + i, 'w39c', `k${i}`, i));
      c.send({ type: 'OP_BATCH', payload: { ops, writeConcern: 'PERSISTED', timeout: 5000 } });
      const ack = await c.expect('OP_ACK');
      assert.equal(ack.payload.achievedLevel, 'PERSISTED', JSON.stringify(ack.payload));
      await c.close();
      const value = await scrape(first, 'achieved="PERSISTED"');
      assert.equal(value(/^hangar_map_size_items\{map="w39c"\} (\S+)$/m), 3);
      assert.equal(value(/^hangar_ops_applied_total\{kind="lww",status="applied"\} (\S+)$/m), 3);
      assert.ok(value(/^hangar_commit_seconds_count (\S+)$/m) >= 1);
      // 3 map rows and their 3 event-journal entries, committed together.
      assert.equal(value(/^hangar_commit_ops_total (\S+)$/m), 6);
      assert.equal(
        value(/^hangar_write_acks_total\{requested="PERSISTED",achieved="PERSISTED",outcome="success"\} (\S+)$/m),
        3,
      );
    } finally {
      await first.stop();
    }
    // After a restart the first use of the map loads it from disk: the load
    // is timed and its size reported.
    const second = await startNode({ env, dataDir });
    try {
      const d = await connect(second);
      d.send({ type: 'QUERY_SUB', payload: { queryId: 'all', mapName: 'w39c', query: {} } });
      const resp = await d.expect('QUERY_RESP');
      assert.equal(resp.payload.results.length, 3, JSON.stringify(resp.payload));
      await d.close();
      const value = await scrape(second, 'hangar_map_load_seconds_count{map="w39c"}');
      assert.equal(value(/^hangar_map_load_seconds_count\{map="w39c"\} (\S+)$/m), 1);
      assert.equal(value(/^hangar_map_loaded_records_total\{map="w39c"\} (\S+)$/m), 3);
      assert.equal(value(/^hangar_map_size_items\{map="w39c"\} (\S+)$/m), 3);
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
