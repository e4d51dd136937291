// Merkle sync: a client that walks the tree from SYNC_INIT down through
// MERKLE_REQ_BUCKET ends with every record; the OR-map counterparts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { memoryNode, connect, putOp, ts } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

/** Walks the tree from the root; returns the leaves' payloads. */
async function walkTree(c, mapName, or) {
  const req = or ? 'ORMAP_MERKLE_REQ_BUCKET' : 'MERKLE_REQ_BUCKET';
  const bucketsT = or ? 'ORMAP_SYNC_RESP_BUCKETS' : 'SYNC_RESP_BUCKETS';
  const leafT = or ? 'ORMAP_SYNC_RESP_LEAF' : 'SYNC_RESP_LEAF';
  const leaves = [];
  const todo = [''];
  let requests = 0;
  while (todo.length) {
    const path = todo.shift();
    assert.ok(++requests < 5000, 'the walk terminates');
    c.send({ type: req, payload: { mapName, path } });
    const answer = await c.expect([bucketsT, leafT], (m) => m.payload.path === path);
    if (answer.type === bucketsT) {
      for (const [hex, hash] of Object.entries(answer.payload.buckets)) {
        assert.match(hex, /^[0-9a-f]$/);
        if (hash !== 0) todo.push(path + hex);
      }
    } else {
      leaves.push(answer.payload);
    }
  }
  return leaves;
}

test('t50 SYNC_INIT gives the root; walking MERKLE_REQ_BUCKET down the tree yields every record', async () => {
  const c = await connect(node);
  const empty = await (async () => {
    c.send({ type: 'SYNC_INIT', mapName: 's50-empty' });
    return c.expect('SYNC_RESP_ROOT');
  })();
  assert.equal(empty.payload.rootHash, 0, 'an empty map has root 0');
  const want = new Map();
  const ops = [];
  for (let i = 0; i < 120; i++) {
    const v = { i, name: `user-${i}` };
    want.set(`key-${i}`, v);
    ops.push(putOp(i + 1, 's50', `key-${i}`, v));
  }
  ops.push({ id: '999', mapName: 's50', key: 'key-7', record: null }); // a tombstone is synced too
  c.send({ type: 'OP_BATCH', payload: { ops, writeConcern: 'APPLIED' } });
  await c.expect('OP_ACK');
  c.send({ type: 'SYNC_INIT', mapName: 's50', lastSyncTimestamp: 0 });
  const root = await c.expect('SYNC_RESP_ROOT', (m) => m.payload.mapName === 's50');
  assert.notEqual(root.payload.rootHash, 0);
  assert.equal(typeof root.payload.timestamp.millis, 'number');
  const leaves = await walkTree(c, 's50', false);
  const got = new Map();
  for (const leaf of leaves) for (const r of leaf.records) got.set(r.key, r.record);
  assert.equal(got.size, 120, 'every key, the tombstone included');
  for (const [k, v] of want) {
    if (k === 'key-7') assert.equal(got.get(k).value, null);
    else assert.deepEqual(got.get(k).value, v, k);
  }
  await c.close();
});

test('t51 OR-map sync: root, walk with tombstones, diff request and push diff', async () => {
  const c = await connect(node);
  const watcher = await connect(node);
  watcher.send({ type: 'QUERY_SUB', payload: { queryId: 'w', mapName: 's51', query: {} } });
  await watcher.expect('QUERY_RESP');
  const tags = {};
  let id = 0;
  for (const key of ['a', 'b', 'c']) {
    for (const value of ['x', 'y']) {
      const t = ts();
      const tag = `${t.millis}:${t.counter}:${t.nodeId}`;
      tags[`${key}/${value}`] = tag;
      c.send({ type: 'CLIENT_OP', payload: { id: String(++id), mapName: 's51', key, opType: 'OR_ADD', orRecord: { value, timestamp: t, tag } } });
      const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === String(id));
      assert.equal(ack.payload.results[0].success, true, JSON.stringify(ack.payload));
    }
  }
  c.send({ type: 'CLIENT_OP', payload: { id: String(++id), mapName: 's51', key: 'b', opType: 'OR_REMOVE', orTag: tags['b/x'] } });
  await c.expect('OP_ACK', (m) => m.payload.lastId === String(id));

  c.send({ type: 'ORMAP_SYNC_INIT', mapName: 's51', rootHash: 0, bucketHashes: {} });
  const root = await c.expect('ORMAP_SYNC_RESP_ROOT');
  assert.notEqual(root.payload.rootHash, 0);
  const leaves = await walkTree(c, 's51', true);
  const values = {};
  let tombstones = new Set();
  for (const leaf of leaves) {
    for (const e of leaf.entries) {
      values[e.key] = e.records.map((r) => r.value).sort();
      tombstones = new Set([...tombstones, ...e.tombstones]);
    }
  }
  assert.deepEqual(values, { a: ['x', 'y'], b: ['y'], c: ['x', 'y'] });
  assert.ok(tombstones.has(tags['b/x']), 'the removed tag is listed as a tombstone');

  c.send({ type: 'ORMAP_DIFF_REQUEST', payload: { mapName: 's51', keys: ['a', 'nope'] } });
  const diff = await c.expect('ORMAP_DIFF_RESPONSE');
  const byKey = Object.fromEntries(diff.payload.entries.map((e) => [e.key, e]));
  assert.deepEqual(byKey.a.records.map((r) => r.value).sort(), ['x', 'y']);
  assert.deepEqual(byKey.nope.records, []);

  const t = ts();
  const pushedTag = `${t.millis}:${t.counter}:${t.nodeId}`;
  c.send({ type: 'ORMAP_PUSH_DIFF', payload: { mapName: 's51', entries: [{ key: 'd', records: [{ value: 'pushed', timestamp: t, tag: pushedTag }], tombstones: [] }] } });
  const ev = await watcher.expect('SERVER_EVENT', (m) => m.payload.key === 'd');
  assert.equal(ev.payload.eventType, 'OR_ADD');
  assert.equal(ev.payload.orRecord.tag, pushedTag);
  c.send({ type: 'ORMAP_DIFF_REQUEST', payload: { mapName: 's51', keys: ['d'] } });
  const after = await c.expect('ORMAP_DIFF_RESPONSE');
  assert.deepEqual(after.payload.entries[0].records.map((r) => r.value), ['pushed']);
  await c.close();
  await watcher.close();
});
