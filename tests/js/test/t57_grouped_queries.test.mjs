// Grouped live queries: QUERY_SUB with groupBy / aggregations answers one
// row per group ({__key, __count, __<func>_<field>, <groupBy fields>}) and
// then sends the group rows a write moves as QUERY_UPDATE: ENTER for a new
// group, UPDATE for a changed one, LEAVE for an emptied one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, connect, putOp, unpack, rng, startCluster, waitForCompleteMap } from '../lib/hangar.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../../host/tests/fixtures/wire');

let node;
before(async () => {
  node = await startNode({ env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' } });
});
after(async () => {
  await node?.stop();
});

let opId = 0;
async function write(c, map, key, value) {
  const id = ++opId;
  const op = value === undefined ? { id: String(id), mapName: map, key, opType: 'REMOVE' } : putOp(id, map, key, value);
  c.send({ type: 'CLIENT_OP', payload: op });
  const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === String(id));
  assert.equal(ack.payload.results[0].success, true, JSON.stringify(ack.payload));
}

/** Group rows by their `category` column. */
const byCategory = (rows) => Object.fromEntries(rows.map((r) => [r.value.category, r.value]));

test('t57 the real client frame QUERY_SUB_GROUPBY_AGG is answered with one row per group', async () => {
  const c = await connect(node);
  await write(c, 'orders', 'o1', { category: 'a', price: 10 });
  await write(c, 'orders', 'o2', { category: 'a', price: 25 });
  await write(c, 'orders', 'o3', { category: 'b', price: 50 });
  const frame = readFileSync(join(FIXTURES, 'QUERY_SUB_GROUPBY_AGG.msgpack'));
  const sub = unpack(frame);
  c.send(frame);
  const resp = await c.expect('QUERY_RESP', (m) => m.payload.queryId === sub.payload.queryId);
  assert.equal(resp.payload.error, undefined, JSON.stringify(resp.payload));
  // The values of the QUERY_RESP_AGG fixture (its `__key` is the opaque bucket id).
  assert.deepEqual(byCategory(resp.payload.results), {
    a: { __key: 'S1:a', __count: 2, __sum_price: 35, category: 'a' },
    b: { __key: 'S1:b', __count: 1, __sum_price: 50, category: 'b' },
  });
  for (const r of resp.payload.results) assert.equal(r.key, r.value.__key);
  await c.close();
});

test('t57 a grouped live query sends ENTER, UPDATE and LEAVE of group rows, and min follows a delete', async () => {
  const sub = await connect(node);
  const w = await connect(node);
  await write(w, 'g57', 'k1', { status: 'open', category: 'x', price: 3 });
  const query = {
    where: { status: 'open' },
    groupBy: ['category'],
    aggregations: [{ func: 'count' }, { func: 'min', field: 'price' }, { func: 'avg', field: 'price' }],
  };
  sub.send({ type: 'QUERY_SUB', payload: { queryId: 'g', mapName: 'g57', query } });
  const snap = await sub.expect('QUERY_RESP', (m) => m.payload.queryId === 'g');
  assert.deepEqual(byCategory(snap.payload.results), {
    x: { __key: 'S1:x', __count: 1, __min_price: 3, __avg_price: 3, category: 'x' },
  });

  await write(w, 'g57', 'k2', { status: 'open', category: 'x', price: 7 });
  let u = await sub.expect('QUERY_UPDATE');
  assert.deepEqual(
    { t: u.payload.changeType, k: u.payload.key, v: u.payload.value },
    { t: 'UPDATE', k: 'S1:x', v: { __key: 'S1:x', __count: 2, __min_price: 3, __avg_price: 5, category: 'x' } },
  );

  await write(w, 'g57', 'k3', { status: 'open', category: 'y', price: 1 });
  u = await sub.expect('QUERY_UPDATE');
  assert.deepEqual({ t: u.payload.changeType, k: u.payload.key }, { t: 'ENTER', k: 'S1:y' });
  assert.equal(u.payload.value.__count, 1);

  // Deleting the current minimum of x: the next smallest takes its place.
  await write(w, 'g57', 'k1', undefined);
  u = await sub.expect('QUERY_UPDATE');
  assert.deepEqual({ t: u.payload.changeType, k: u.payload.key, min: u.payload.value.__min_price }, { t: 'UPDATE', k: 'S1:x', min: 7 });

  // Leaving the filter empties y.
  await write(w, 'g57', 'k3', { status: 'closed', category: 'y', price: 1 });
  u = await sub.expect('QUERY_UPDATE');
  assert.deepEqual({ t: u.payload.changeType, k: u.payload.key, v: u.payload.value }, { t: 'LEAVE', k: 'S1:y', v: null });

  // A change to a field no aggregate reads moves no group row.
  await write(w, 'g57', 'k2', { status: 'open', category: 'x', price: 7, note: 'hi' });
  await sub.barrier();
  assert.equal(sub.pending('QUERY_UPDATE').length, 0, JSON.stringify(sub.pending('QUERY_UPDATE')));
  await sub.close();
  await w.close();
});

test('t57 grouped queries refuse sort, limit, cursor, fields and bad aggregations by name', async () => {
  const c = await connect(node);
  const cases = [
    [{ groupBy: ['c'], sort: [{ field: 'c', direction: 'asc' }] }, undefined, 'query.sort'],
    [{ groupBy: ['c'], limit: 5 }, undefined, 'query.limit'],
    [{ groupBy: ['c'], cursor: 'abc' }, undefined, 'query.cursor'],
    [{ groupBy: ['c'] }, ['c'], 'fields'],
    [{ groupBy: ['c'], aggregations: [{ func: 'median', field: 'p' }] }, undefined, 'median'],
    [{ groupBy: ['c'], aggregations: [{ func: 'sum' }] }, undefined, '`sum` needs a field'],
    [{ groupBy: 'c' }, undefined, 'query.groupBy'],
  ];
  let i = 0;
  for (const [query, fields, want] of cases) {
    const queryId = `bad${++i}`;
    c.send({ type: 'QUERY_SUB', payload: { queryId, mapName: 'g57bad', query, ...(fields ? { fields } : {}) } });
    const r = await c.expect('QUERY_RESP', (m) => m.payload.queryId === queryId);
    assert.equal(r.payload.code, 400, JSON.stringify(r.payload));
    assert.ok(r.payload.error.includes(want), `${JSON.stringify(query)}: ${r.payload.error}`);
  }
  await c.close();
});

// ---- property test: live aggregates == recomputation --------------------

const bucketOf = (v) => {
  if (v === undefined || v === null) return 'N';
  if (typeof v === 'number') return `I${v};`; // the test writes integer groups only
  return `S${Buffer.byteLength(v)}:${v}`;
};

/** The group rows of `records` computed from scratch. */
function recompute(records) {
  const groups = new Map();
  for (const r of records.values()) {
    if (r.status !== 'open') continue;
    const key = bucketOf(r.team);
    if (!groups.has(key)) groups.set(key, { team: r.team ?? null, rows: [] });
    groups.get(key).rows.push(r);
  }
  const out = {};
  for (const [key, g] of groups) {
    const nums = g.rows.map((r) => r.score).filter((s) => typeof s === 'number');
    const sum = nums.reduce((a, b) => a + b, 0);
    out[key] = {
      __key: key,
      __count: g.rows.length,
      __sum_score: sum,
      __avg_score: nums.length ? sum / nums.length : null,
      __min_score: nums.length ? Math.min(...nums) : null,
      __max_score: nums.length ? Math.max(...nums) : null,
      team: g.team,
    };
  }
  return out;
}

/** A seeded stream of records `{status, team?, score?}`. */
function recordsOf(next) {
  const pick = (xs) => xs[Math.floor(next() * xs.length)];
  return () => {
    const r = { status: pick(['open', 'open', 'open', 'closed']) };
    const team = pick(['red', 'blue', 'green', 7, null, undefined]);
    if (team !== undefined) r.team = team;
    // Integers and quarters: sums are exact, so comparisons can be too.
    const score = pick(['int', 'quarter', 'text', 'none']);
    if (score === 'int') r.score = Math.floor(next() * 200) - 100;
    if (score === 'quarter') r.score = Math.floor(next() * 80) - 40 + 0.25;
    if (score === 'text') r.score = 'n/a';
    return r;
  };
}

const GROUPED = {
  where: { status: 'open' },
  groupBy: ['team'],
  aggregations: ['sum', 'avg', 'min', 'max'].map((func) => ({ func, field: 'score' })),
};

/** The client's view of a grouped query: the snapshot, then its updates,
 * each checked to be ENTER for a group it lacks, UPDATE / LEAVE for one it has. */
class GroupView {
  constructor(snap) {
    this.rows = new Map(snap.payload.results.map((r) => [r.key, r.value]));
  }

  apply(c, what) {
    for (const u of c.take('QUERY_UPDATE')) {
      const { key, changeType, value } = u.payload;
      if (changeType === 'ENTER') assert.ok(!this.rows.has(key), `${what}: ENTER for a group the client has: ${key}`);
      else assert.ok(this.rows.has(key), `${what}: ${changeType} for a group the client lacks: ${key}`);
      if (changeType === 'LEAVE') this.rows.delete(key);
      else this.rows.set(key, value);
    }
    return Object.fromEntries(this.rows);
  }
}

for (const seed of [1, 7, 42, 2026]) {
  test(`t57 property (seed ${seed}): live group rows equal a recomputation after random puts, updates and deletes`, async () => {
    const next = rng(seed);
    const randomRecord = recordsOf(next);
    const map = `g57p${seed}`;
    const sub = await connect(node);
    const w = await connect(node);
    const records = new Map();
    // Some records before the subscription (in the snapshot), the rest live.
    for (let i = 0; i < 10; i++) {
      const r = randomRecord();
      records.set(`k${i}`, r);
      await write(w, map, `k${i}`, r);
    }
    sub.send({ type: 'QUERY_SUB', payload: { queryId: 'p', mapName: map, query: GROUPED } });
    const view = new GroupView(await sub.expect('QUERY_RESP', (m) => m.payload.queryId === 'p'));
    const check = async (step) => {
      // Updates are queued before the writer's OP_ACK: a barrier sees them all.
      await sub.barrier();
      assert.deepEqual(view.apply(sub, step), recompute(records), `seed ${seed}, ${step}`);
    };
    await check('snapshot');
    for (let step = 0; step < 60; step++) {
      const key = `k${Math.floor(next() * 14)}`;
      if (next() < 0.25) {
        records.delete(key);
        await write(w, map, key, undefined);
      } else {
        const r = randomRecord();
        records.set(key, r);
        await write(w, map, key, r);
      }
      if (step % 5 === 4) await check(`step ${step}`);
    }
    await check('end');
    await sub.close();
    await w.close();
  });
}

// ---- the same on a 3-node cluster ---------------------------------------

/** Waits (bounded) until the view, fed by `sub`'s updates, equals `want`. */
async function settle(view, sub, want, what) {
  const until = Date.now() + 15_000;
  let got = view.apply(sub, what);
  while (!isDeepStrictEqual(got, want) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    got = view.apply(sub, what);
  }
  assert.deepEqual(got, want, `${what}: the view did not reach the recomputation within 15 s`);
}

test('t57 cluster: a grouped live query on one of 3 nodes follows writes to the others, across every partition', async () => {
  const ids = ['g1', 'g2', 'g3'];
  const nodes = await startCluster(ids, 'js-grouped', { env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' } });
  try {
    const [sub, w1, w3] = await Promise.all([connect(nodes[1]), connect(nodes[0]), connect(nodes[2])]);
    // Wait for a map where all three nodes are ACTIVE and own partitions.
    await waitForCompleteMap(sub, 3);
    const next = rng(57);
    const randomRecord = recordsOf(next);
    const records = new Map();
    const map = 'g57c';
    for (let i = 0; i < 20; i++) {
      const r = randomRecord();
      records.set(`k${i}`, r);
      await write(i % 2 ? w1 : w3, map, `k${i}`, r);
    }
    sub.send({ type: 'QUERY_SUB', payload: { queryId: 'c', mapName: map, query: GROUPED } });
    const snap = await sub.expect('QUERY_RESP', (m) => m.payload.queryId === 'c');
    assert.equal(snap.payload.error, undefined, JSON.stringify(snap.payload));
    const view = new GroupView(snap);
    // The query reads at EVENTUAL, so partitions may be served by this
    // node's backups, which apply the other nodes' writes shortly after
    // those were acknowledged: the snapshot may trail them, and the live
    // updates must then bring the view to every write (bounded wait).
    await settle(view, sub, recompute(records), 'snapshot over every partition');
    for (let step = 0; step < 60; step++) {
      const key = `k${Math.floor(next() * 30)}`;
      const w = next() < 0.5 ? w1 : w3;
      if (next() < 0.25) {
        records.delete(key);
        await write(w, map, key, undefined);
      } else {
        const r = randomRecord();
        records.set(key, r);
        await write(w, map, key, r);
      }
    }
    // Updates from other nodes arrive after the writers' acks.
    await settle(view, sub, recompute(records), 'live');
    await Promise.all([sub.close(), w1.close(), w3.close()]);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});
