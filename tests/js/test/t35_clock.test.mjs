// The node's clock against a hostile client: a timestamp further ahead of
// the node's wall clock than the drift bound (60 s) is refused on every
// write path (CLIENT_OP, OP_BATCH, ORMAP_PUSH_DIFF); the clock does not
// move, so a later honest write of the key wins and the timestamps the
// server stamps itself stay near the wall clock, across a restart too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, connect, putOp, ts } from '../lib/hangar.mjs';

const MAX_U64 = 2n ** 64n - 1n; // goes out as msgpack uint64
const env = { HANGAR_NO_AUTH: '1' }; // the embedded store: the restart keeps data

/** The server's own HLC, read twice: the timestamp of SYNC_RESP_ROOT and
 * that of a tombstone the server stamps (a REMOVE without a record, seen
 * by a subscriber as SERVER_EVENT). Both must be near the wall clock. */
async function assertClockHonest(node, label) {
  const a = await connect(node);
  const b = await connect(node);
  a.send({ type: 'SYNC_INIT', mapName: 'c35-probe' });
  const root = await a.expect('SYNC_RESP_ROOT');
  b.send({ type: 'QUERY_SUB', payload: { queryId: 'probe', mapName: 'c35-probe', query: {} } });
  await b.expect('QUERY_RESP');
  const key = `gone-${Date.now()}`;
  a.send({ type: 'CLIENT_OP', payload: { id: 'rm', mapName: 'c35-probe', key, opType: 'REMOVE' } });
  await a.expect('OP_ACK', (m) => m.payload.lastId === 'rm');
  const ev = await b.expect('SERVER_EVENT', (m) => m.payload.key === key);
  const now = Date.now();
  for (const [what, t] of [['SYNC_RESP_ROOT', root.payload.timestamp], ['server tombstone', ev.payload.record.timestamp]]) {
    assert.equal(typeof t.millis, 'number', `${label}: ${what} ${JSON.stringify(t)}`);
    assert.ok(t.millis <= now + 1_000 && t.millis >= now - 60_000, `${label}: ${what} at ${t.millis}, wall ${now}`);
  }
  await a.close();
  await b.close();
}

async function valueOf(node, map, key) {
  const c = await connect(node);
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'v', mapName: map, query: {} } });
  const resp = await c.expect('QUERY_RESP');
  await c.close();
  return resp.payload.results.find((r) => r.key === key)?.value;
}

test('t35 far-future timestamps are refused, the clock does not move, an honest write wins, also after a restart', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hangar-js-clock-'));
  try {
    let node = await startNode({ env, dataDir });
    try {
      const c = await connect(node);
      const evil = [
        ['2^64-1', { millis: MAX_U64, counter: 0, nodeId: 'evil' }],
        ['now+1h', { millis: Date.now() + 3_600_000, counter: 0, nodeId: 'evil' }],
      ];
      for (const [name, timestamp] of evil) {
        c.send({ type: 'CLIENT_OP', payload: { id: `op-${name}`, mapName: 'c35', key: 'k', record: { value: name, timestamp } } });
        const rej = await c.expect('OP_REJECTED', (m) => m.payload.opId === `op-${name}`);
        assert.equal(rej.payload.code, 400, JSON.stringify(rej.payload));
        assert.match(rej.payload.reason, /ahead of this node's clock/);
        c.send({
          type: 'OP_BATCH',
          payload: { ops: [{ id: `b-${name}`, mapName: 'c35', key: 'k', record: { value: name, timestamp } }], writeConcern: 'PERSISTED' },
        });
        const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === `b-${name}`);
        assert.equal(ack.payload.results[0].success, false, JSON.stringify(ack.payload));
        assert.match(ack.payload.results[0].error, /ahead of this node's clock/);
        // A sync push is merged through the same path and refused too.
        const tag = `${timestamp.millis}:0:evil`;
        c.send({ type: 'ORMAP_PUSH_DIFF', payload: { mapName: 'c35-or', entries: [{ key: 'k', records: [{ value: name, timestamp, tag }], tombstones: [] }] } });
        await c.barrier();
        c.send({ type: 'ORMAP_DIFF_REQUEST', payload: { mapName: 'c35-or', keys: ['k'] } });
        const diff = await c.expect('ORMAP_DIFF_RESPONSE');
        assert.deepEqual(diff.payload.entries[0].records, [], `pushed ${name} record not merged`);
      }
      await assertClockHonest(node, 'after the refused writes');

      c.send({ type: 'OP_BATCH', payload: { ops: [putOp('honest', 'c35', 'k', 'honest')], writeConcern: 'PERSISTED' } });
      const ok = await c.expect('OP_ACK', (m) => m.payload.lastId === 'honest');
      assert.equal(ok.payload.results[0].success, true, JSON.stringify(ok.payload));
      assert.equal(await valueOf(node, 'c35', 'k'), 'honest');
      await c.close();
    } finally {
      await node.stop();
    }

    node = await startNode({ env, dataDir });
    try {
      assert.equal(await valueOf(node, 'c35', 'k'), 'honest', 'the honest write survives the restart');
      await assertClockHonest(node, 'after the restart');
      const c = await connect(node);
      c.send({ type: 'CLIENT_OP', payload: { id: 'again', mapName: 'c35', key: 'k', record: { value: 'again', timestamp: ts() } } });
      const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === 'again');
      assert.equal(ack.payload.results[0].success, true, JSON.stringify(ack.payload));
      assert.equal(await valueOf(node, 'c35', 'k'), 'again');
      await c.close();
    } finally {
      await node.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('t35b a record whose nodeId contains ":" is refused', async () => {
  const node = await startNode({ env: { ...env, STORAGE_BACKEND: 'memory' } });
  try {
    const c = await connect(node);
    c.send({ type: 'CLIENT_OP', payload: { id: 'colon', mapName: 'c35b', key: 'k', record: { value: 1, timestamp: ts('a:b') } } });
    const rej = await c.expect('OP_REJECTED');
    assert.equal(rej.payload.code, 400);
    assert.match(rej.payload.reason, /node id "a:b"/);
    await c.close();
  } finally {
    await node.stop();
  }
});
