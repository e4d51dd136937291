// OR-map tombstone epochs as a TopGun client meets them: device identities
// (DEVICE_HELLO / AUTH mint and keep them), coveringEpoch on OR sync
// answers, CLIENT_APPLY_ACK cursors (clamped to what the connection was
// sent), pruning licensed by the lowest cursor with GC_PRUNE to clients,
// fullResync for devices that may lack pruned tombstones (their pushed
// records are dropped), SYNC_RESET_REQUIRED without protection, and all of
// it across a restart.
//
// Pruning runs on a timer (`prune_interval_ms`, 50 ms here); "nothing was
// pruned" is checked after several intervals have passed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, memoryNode, connect, ts, jwt, inSeconds, startCluster, waitForCompleteMap, freePort } from '../lib/hangar.mjs';

const sync = (extra = '') => `[sync]\ntombstone_epoch_width = 2\nprune_interval_ms = 50\n${extra}`;
const intervals = (n = 6) => new Promise((r) => setTimeout(r, 50 * n));

let node;
before(async () => {
  node = await memoryNode({ config: sync() });
});
after(async () => {
  await node?.stop();
});

let opId = 0;
/** Adds `value` under a fresh tag on `key`; returns the tag. */
async function add(c, mapName, key, value) {
  const t = ts();
  const tag = `${t.millis}:${t.counter}:${t.nodeId}`;
  const id = String(++opId);
  c.send({ type: 'CLIENT_OP', payload: { id, mapName, key, opType: 'OR_ADD', orRecord: { value, timestamp: t, tag } } });
  await c.expect('OP_ACK', (m) => m.payload.lastId === id);
  return tag;
}

async function remove(c, mapName, key, tag) {
  const id = String(++opId);
  c.send({ type: 'CLIENT_OP', payload: { id, mapName, key, opType: 'OR_REMOVE', orTag: tag } });
  await c.expect('OP_ACK', (m) => m.payload.lastId === id);
}

/**
 * Device `dc` syncs `mapName` and confirms epoch 0; then `w` adds three
 * tags to key `k` and removes the first two (a full epoch at width 2).
 * Returns the three tags.
 */
async function twoTombstones(w, dc, mapName) {
  await root(dc, mapName);
  dc.send({ type: 'CLIENT_APPLY_ACK', cursor: 0 });
  await dc.barrier();
  const tags = [];
  for (let i = 0; i < 3; i++) tags.push(await add(w, mapName, 'k', `v${i}`));
  await remove(w, mapName, 'k', tags[0]);
  await remove(w, mapName, 'k', tags[1]);
  return tags;
}

async function device(n, token) {
  const c = await connect(n);
  c.send(token ? { type: 'DEVICE_HELLO', deviceToken: token } : { type: 'DEVICE_HELLO' });
  const ack = await c.expect('DEVICE_ACK');
  return { c, ack };
}

async function root(c, mapName, claimedEpoch) {
  const m = { type: 'ORMAP_SYNC_INIT', mapName, rootHash: 0, bucketHashes: {} };
  if (claimedEpoch !== undefined) m.claimedEpoch = claimedEpoch;
  c.send(m);
  return c.expect(['ORMAP_SYNC_RESP_ROOT', 'SYNC_RESET_REQUIRED'], (x) => x.payload.mapName === mapName);
}

async function diff(c, mapName, key) {
  c.send({ type: 'ORMAP_DIFF_REQUEST', payload: { mapName, keys: [key] } });
  const d = await c.expect('ORMAP_DIFF_RESPONSE', (m) => m.payload.mapName === mapName);
  return d.payload;
}

test('t59a DEVICE_HELLO mints a device identity; its token keeps it; anything else mints a new one', async () => {
  const { c, ack } = await device(node);
  assert.match(ack.deviceId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(ack.deviceToken.startsWith(`${ack.deviceId}.`), ack.deviceToken);
  await c.close();
  const again = await device(node, ack.deviceToken);
  assert.equal(again.ack.deviceId, ack.deviceId, 'the token keeps the identity');
  assert.equal(again.ack.deviceToken, undefined, 'no new token');
  await again.c.close();
  const forged = await device(node, `${ack.deviceId}.${'0'.repeat(64)}`);
  assert.notEqual(forged.ack.deviceId, ack.deviceId, 'a wrong secret mints');
  assert.ok(forged.ack.deviceToken);
  await forged.c.close();
});

test('t59b a token-bearing AUTH binds a device too (AUTH_ACK carries it); with JWT auth the identity is per user', async () => {
  const secret = 'epoch-secret';
  const n = await startNode({ env: { JWT_SECRET: secret, STORAGE_BACKEND: 'memory' }, config: sync() });
  try {
    const login = async (sub, deviceToken) => {
      const c = await connect(n);
      await c.expect('AUTH_REQUIRED');
      const m = { type: 'AUTH', token: jwt(secret, { sub, exp: inSeconds(600) }) };
      if (deviceToken) m.deviceToken = deviceToken;
      c.send(m);
      const ack = await c.expect('AUTH_ACK');
      await c.close();
      return ack;
    };
    const first = await login('alice');
    assert.ok(first.deviceId && first.deviceToken, JSON.stringify(first));
    assert.equal((await login('alice', first.deviceToken)).deviceId, first.deviceId);
    assert.notEqual((await login('bob', first.deviceToken)).deviceId, first.deviceId, "another user's token does not bind");
  } finally {
    await n.stop();
  }
  const c = await connect(node);
  c.send({ type: 'AUTH', token: 'not.a.jwt' });
  const ack = await c.expect('AUTH_ACK');
  assert.ok(ack.deviceId && ack.deviceToken, 'no-auth AUTH binds a device as DEVICE_HELLO does');
  await c.close();
});

test('t59c coveringEpoch rides on the OR root, leaf and diff once the epoch moved; cursors are clamped; pruning waits for every device, then GC_PRUNE', async () => {
  const mapName = 'e59c';
  const w = await connect(node);
  const a = await device(node);
  const b = await device(node);
  const base = (await root(a.c, mapName)).payload.coveringEpoch ?? 0;
  await root(b.c, mapName);
  // Both devices confirm what they were sent.
  a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: base });
  b.c.send({ type: 'CLIENT_APPLY_ACK', cursor: base });
  await a.c.barrier();
  await b.c.barrier();

  const tags = [];
  for (let i = 0; i < 4; i++) tags.push(await add(w, mapName, 'k', `v${i}`));
  await remove(w, mapName, 'k', tags[0]);
  await remove(w, mapName, 'k', tags[1]); // the epoch closes: width 2
  const r = await root(a.c, mapName);
  assert.equal(r.payload.coveringEpoch, base + 1, JSON.stringify(r.payload));
  assert.equal(r.payload.fullResync, undefined, 'a device that lacks nothing pruned merges');
  a.c.send({ type: 'ORMAP_MERKLE_REQ_BUCKET', payload: { mapName, path: '' } });
  let path = '';
  for (;;) {
    const m = await a.c.expect(['ORMAP_SYNC_RESP_BUCKETS', 'ORMAP_SYNC_RESP_LEAF'], (x) => x.payload.path === path);
    if (m.type === 'ORMAP_SYNC_RESP_LEAF') {
      assert.equal(m.payload.coveringEpoch, base + 1, 'the leaf carries it');
      break;
    }
    path += Object.entries(m.payload.buckets).find(([, h]) => h !== 0)[0];
    a.c.send({ type: 'ORMAP_MERKLE_REQ_BUCKET', payload: { mapName, path } });
  }
  const d = await diff(a.c, mapName, 'k');
  assert.equal(d.coveringEpoch, base + 1, 'the diff carries it');
  assert.ok(d.entries[0].tombstones.includes(tags[0]));

  // A confirms far ahead: clamped to the epoch it was sent. B confirms an
  // epoch it was never sent: clamped to what it was sent (base). So B
  // still holds pruning back.
  a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: 1e12 });
  b.c.send({ type: 'CLIENT_APPLY_ACK', cursor: base + 1 });
  await intervals();
  assert.equal(a.c.pending('GC_PRUNE').length, 0, 'nothing pruned while B lags');
  assert.ok((await diff(w, mapName, 'k')).entries[0].tombstones.includes(tags[0]));

  // B syncs, is sent the epoch, confirms it: the closed epoch is pruned.
  await root(b.c, mapName);
  b.c.send({ type: 'CLIENT_APPLY_ACK', cursor: base + 1 });
  const gc = await a.c.expect('GC_PRUNE', () => true, 5_000);
  assert.equal(typeof gc.payload.olderThan.millis, 'number');
  await b.c.expect('GC_PRUNE');
  const after = (await diff(w, mapName, 'k')).entries[0];
  assert.ok(!after.tombstones.includes(tags[0]) && !after.tombstones.includes(tags[1]), JSON.stringify(after));
  assert.deepEqual(after.records.map((x) => x.value).sort(), ['v2', 'v3']);

  // A device that may lack the pruned tombstones is told to resync: a new
  // one, one without a claim, one that claims less than it confirmed.
  const fresh = await device(node);
  assert.equal((await root(fresh.c, mapName)).payload.fullResync, true, 'unknown device');
  assert.equal((await root(a.c, mapName)).payload.fullResync, true, 'no claimedEpoch');
  const a2 = await device(node, a.ack.deviceToken);
  assert.equal((await root(a2.c, mapName, 0)).payload.fullResync, true, 'regressed claim');
  const a3 = await device(node, a.ack.deviceToken);
  assert.equal((await root(a3.c, mapName, base + 1)).payload.fullResync, undefined, 'an up-to-date claim merges');

  // The stale device pushes its old copy back: the pruned tag stays dead.
  // The up-to-date one pushes a new record: it is merged.
  const t = ts();
  fresh.c.send({ type: 'ORMAP_PUSH_DIFF', payload: { mapName, entries: [{ key: 'k', records: [{ value: 'v0', timestamp: t, tag: tags[0] }], tombstones: [] }] } });
  await fresh.c.barrier();
  const t2 = ts();
  const newTag = `${t2.millis}:${t2.counter}:${t2.nodeId}`;
  a3.c.send({ type: 'ORMAP_PUSH_DIFF', payload: { mapName, entries: [{ key: 'k', records: [{ value: 'new', timestamp: t2, tag: newTag }], tombstones: [] }] } });
  await a3.c.barrier();
  const values = (await diff(w, mapName, 'k')).entries[0].records.map((x) => x.value).sort();
  assert.deepEqual(values, ['new', 'v2', 'v3'], 'the pruned tag did not come back');

  // Once the stale device confirms the current epoch, its pushes merge.
  fresh.c.send({ type: 'CLIENT_APPLY_ACK', cursor: base + 1 });
  const t3 = ts();
  const tag3 = `${t3.millis}:${t3.counter}:${t3.nodeId}`;
  fresh.c.send({ type: 'ORMAP_PUSH_DIFF', payload: { mapName, entries: [{ key: 'k', records: [{ value: 'fresh', timestamp: t3, tag: tag3 }], tombstones: [] }] } });
  await fresh.c.barrier();
  assert.ok((await diff(w, mapName, 'k')).entries[0].records.some((x) => x.value === 'fresh'));
  for (const c of [w, a.c, b.c, fresh.c, a2.c, a3.c]) await c.close();
});

test('t59d epochs, cursors and pruning survive a restart; without protection a stale device gets SYNC_RESET_REQUIRED', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-t59d-'));
  const data = join(dir, 'data');
  const start = (extra) => startNode({ env: { HANGAR_NO_AUTH: '1' }, dataDir: data, config: sync(extra) });
  const mapName = 'e59d';
  let n = await start();
  try {
    const w = await connect(n);
    const a = await device(n);
    const tags = await twoTombstones(w, a.c, mapName);
    assert.equal((await root(a.c, mapName)).payload.coveringEpoch, 1);
    a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: 1 });
    await a.c.expect('GC_PRUNE', () => true, 5_000);
    await w.close();
    await a.c.close();
    await n.stop();

    n = await start();
    const back = await device(n, a.ack.deviceToken);
    assert.equal(back.ack.deviceId, a.ack.deviceId, 'the identity survived');
    const r = await root(back.c, mapName, 1);
    assert.equal(r.payload.coveringEpoch, 1, 'the epoch survived');
    assert.equal(r.payload.fullResync, undefined, 'its cursor survived: it lacks nothing');
    const fresh = await device(n);
    assert.equal((await root(fresh.c, mapName)).payload.fullResync, true, 'the prune survived');
    const k = (await diff(back.c, mapName, 'k')).entries[0];
    assert.ok(!k.tombstones.includes(tags[0]), 'pruned in the store too');
    assert.deepEqual(k.records.map((x) => x.value), ['v2']);
    await back.c.close();
    await fresh.c.close();
    await n.stop();

    n = await start('epoch_protection = false\n');
    const stale = await device(n);
    const reset = await root(stale.c, mapName);
    assert.equal(reset.type, 'SYNC_RESET_REQUIRED');
    assert.match(reset.payload.reason, /pruned/);
    const ok = await device(n, a.ack.deviceToken);
    assert.equal((await root(ok.c, mapName, 1)).type, 'ORMAP_SYNC_RESP_ROOT');
    await stale.c.close();
    await ok.c.close();
  } finally {
    await n.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('t59e a bad [sync] setting stops the node with a message naming it', async () => {
  await assert.rejects(
    memoryNode({ config: '[sync]\ntombstone_epoch_width = 0\n' }),
    /sync\.tombstone_epoch_width: must be at least 1/,
  );
});

/** Syncs `mapName` on `dc` until its answer covers epoch `min` (10 s bound); returns the epoch. */
async function coveredAt(dc, mapName, min) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const covering = (await root(dc, mapName)).payload.coveringEpoch ?? 0;
    if (covering >= min) return covering;
    assert.ok(Date.now() < deadline, `no epoch ${min} within 10 s`);
    await intervals(2);
  }
}

/** The tombstones of `key` as node `c` answers them. */
async function tombstonesOf(c, mapName, key) {
  const e = (await diff(c, mapName, key)).entries.find((x) => x.key === key);
  return e?.tombstones ?? [];
}

test('t59f in a cluster a tombstone is pruned once the devices of every node confirmed it, then on every node', async () => {
  const nodes = await startCluster(['e1', 'e2'], `t59f-${process.pid}`, {
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
    config: sync(),
  });
  try {
    const mapName = 'e59f';
    const w = await connect(nodes[0]);
    await waitForCompleteMap(w, 2);
    const other = await connect(nodes[1]);
    // One device on each node; b confirms epoch 0 of e2 before any tag
    // exists, so it holds e2's pruning back until it confirms more.
    const b = await device(nodes[1]);
    await root(b.c, mapName);
    b.c.send({ type: 'CLIENT_APPLY_ACK', cursor: 0 });
    await b.c.barrier();
    const a = await device(nodes[0]);
    const tags = await twoTombstones(w, a.c, mapName);
    // Both nodes hold every partition (backup_count 1): each counts both
    // tombstones in its own epochs.
    const aCursor = await coveredAt(a.c, mapName, 1);
    a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: aCursor });
    await a.c.barrier();
    await intervals(10);
    assert.equal(a.c.pending('GC_PRUNE').length, 0, "e1's devices alone license nothing");
    for (const c of [w, other]) {
      const t = await tombstonesOf(c, mapName, 'k');
      assert.ok(t.includes(tags[0]) && t.includes(tags[1]), JSON.stringify(t));
    }
    // A device that lacked nothing pruned still merges.
    assert.equal((await root((await device(nodes[0])).c, mapName)).payload.fullResync, undefined);
    // e2's device confirms: every member licenses them now.
    const bCursor = await coveredAt(b.c, mapName, 1);
    b.c.send({ type: 'CLIENT_APPLY_ACK', cursor: bCursor });
    await b.c.barrier();
    await a.c.expect('GC_PRUNE');
    await b.c.expect('GC_PRUNE');
    for (const c of [w, other]) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const t = await tombstonesOf(c, mapName, 'k');
        if (!t.includes(tags[0]) && !t.includes(tags[1])) break;
        assert.ok(Date.now() < deadline, `still listed: ${JSON.stringify(t)}`);
        await intervals(2);
      }
    }
    // The devices that confirmed keep merging (no node took the safety
    // step for a round it did take part in).
    assert.equal((await root(a.c, mapName, aCursor)).payload.fullResync, undefined);
    assert.equal((await root(b.c, mapName, bCursor)).payload.fullResync, undefined);
    // The live tag stayed; a new device may lack the pruned tombstones.
    const k = (await diff(other, mapName, 'k')).entries.find((x) => x.key === 'k');
    assert.deepEqual(k.records.map((r) => r.tag), [tags[2]]);
    for (const n of nodes) {
      const fresh = await device(n);
      assert.equal((await root(fresh.c, mapName)).payload.fullResync, true);
      await fresh.c.close();
    }
    for (const c of [w, a.c, b.c, other]) await c.close();
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('t59g a killed member holds pruning: its devices cannot confirm', async () => {
  const nodes = await startCluster(['g1', 'g2'], `t59g-${process.pid}`, {
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
    config: sync(),
  });
  try {
    const mapName = 'e59g';
    const w = await connect(nodes[0]);
    await waitForCompleteMap(w, 2);
    const a = await device(nodes[0]);
    // Control: g2 has no device, so once a confirms, both nodes license
    // the first two tombstones and they are pruned.
    await twoTombstones(w, a.c, mapName);
    const first = await coveredAt(a.c, mapName, 1);
    a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: first });
    await a.c.expect('GC_PRUNE');
    // Two more tombstones close the next epoch; a is sent it, then g2 dies
    // before a confirms it.
    const more = [];
    for (let i = 0; i < 2; i++) more.push(await add(w, mapName, 'j', `u${i}`));
    for (const t of more) await remove(w, mapName, 'j', t);
    const second = await coveredAt(a.c, mapName, first + 1);
    nodes[1].proc.kill('SIGKILL');
    await nodes[1].exited;
    a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: second });
    await a.c.barrier();
    await intervals(20);
    assert.equal(a.c.pending('GC_PRUNE').length, 0, 'pruned while a member was dead');
    // The licence's topic is the nodes' own.
    for (const type of ['TOPIC_SUB', 'TOPIC_PUB']) {
      w.send({ type, payload: { topic: '$hangar/or-prune', data: { type: 'HELLO', node: 'x' } } });
      const e = await w.expect('ERROR');
      assert.equal(e.payload.code, 403, JSON.stringify(e.payload));
    }
    for (const c of [w, a.c]) await c.close();
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('t59h a node that joins after a prune answers devices it does not know fullResync until they confirm', async () => {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()));
  const clusterId = `t59h-${process.pid}`;
  const start = (i, seeds) =>
    startNode({
      env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
      config: sync(),
      args: [
        '--node-id', `h${i + 1}`,
        '--cluster-id', clusterId,
        '--cluster-port', String(ports[i]),
        '--seed-nodes', seeds.map((j) => `127.0.0.1:${ports[j]}`).join(','),
        '--advertise-host', '127.0.0.1',
      ],
    });
  const nodes = await Promise.all([start(0, [1]), start(1, [0])]);
  try {
    const mapName = 'e59h';
    const w = await connect(nodes[0]);
    await waitForCompleteMap(w, 2);
    // h2 has no device: once a confirms, the two tombstones are pruned.
    const a = await device(nodes[0]);
    await twoTombstones(w, a.c, mapName);
    a.c.send({ type: 'CLIENT_APPLY_ACK', cursor: await coveredAt(a.c, mapName, 1) });
    await a.c.expect('GC_PRUNE');
    // h3 joins. It never listed those tombstones, and a device it does not
    // know may hold their tags from before: it learns the cluster pruned.
    nodes.push(await start(2, [0, 1]));
    const c3 = await connect(nodes[2]);
    await waitForCompleteMap(c3, 3);
    const fresh = await device(nodes[2]);
    const r = (await root(fresh.c, mapName)).payload;
    assert.equal(r.fullResync, true, JSON.stringify(r));
    assert.ok(r.coveringEpoch >= 1, JSON.stringify(r));
    // Once it confirms what it was sent, it merges.
    fresh.c.send({ type: 'CLIENT_APPLY_ACK', cursor: r.coveringEpoch });
    await fresh.c.barrier();
    assert.equal((await root(fresh.c, mapName, r.coveringEpoch)).payload.fullResync, undefined);
    for (const c of [w, a.c, c3, fresh.c]) await c.close();
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});
