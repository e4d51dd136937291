// POST /sync (HTTP sync, TopGun's HttpSyncProvider): msgpack body in and
// out; writes shared with WebSocket clients both ways; deltas after a
// timestamp with PUT and REMOVE; queries (grouped ones too) and searches;
// the fixture request;
// 401 / 413 / 400 refusals; the rate limit (429).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { startNode, memoryNode, connect, putOp, ts, pack, unpack, jwt, inSeconds } from '../lib/hangar.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../../host/tests/fixtures/wire');
const SECRET = 'http-sync-secret-0123456789';

let node;
let authNode;
let limitedNode;
before(async () => {
  limitedNode = await memoryNode({ config: '[network]\nrate_limit_per_sec = 0.5\nrate_limit_burst = 10.0\n' });
  node = await memoryNode({ config: '[storage.full_text_search.articles]\nfields = ["title", "body"]\n' });
  authNode = await startNode({ env: { JWT_SECRET: SECRET, STORAGE_BACKEND: 'memory' } });
});
after(async () => {
  await node?.stop();
  await authNode?.stop();
  await limitedNode?.stop();
});

/** POSTs `body` (an object, packed; or raw bytes) to /sync. */
async function post(n, body, headers = {}) {
  const raw = Buffer.isBuffer(body) ? body : pack(body);
  const res = await fetch(`${n.http}/sync`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-msgpack', ...headers },
    body: raw,
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  const type = res.headers.get('content-type') ?? '';
  let decoded;
  if (type.includes('msgpack')) decoded = unpack(bytes);
  else if (type.includes('json')) decoded = JSON.parse(bytes.toString());
  return { status: res.status, type, body: decoded, text: bytes.toString() };
}

const base = () => ({ clientId: 'http-client', clientHlc: ts('http-client') });

test('t55 a write through /sync is acknowledged and readable over the WebSocket', async () => {
  const r = await post(node, {
    ...base(),
    operations: [putOp(1, 'h55', 'a', { n: 1 }), putOp(2, 'h55', 'b', { n: 2 })],
  });
  assert.equal(r.status, 200, r.text);
  assert.match(r.type, /application\/msgpack/);
  assert.equal(r.body.ack.lastId, '2');
  assert.deepEqual(r.body.ack.results.map((x) => [x.opId, x.success]), [['1', true], ['2', true]]);
  assert.equal(typeof r.body.serverHlc.millis, 'number');
  assert.equal(r.body.errors, undefined);

  const c = await connect(node);
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'q55', mapName: 'h55', query: {} } });
  const resp = await c.expect('QUERY_RESP', (m) => m.payload.queryId === 'q55');
  assert.deepEqual(
    resp.payload.results.map((x) => [x.key, x.value.n]).sort(),
    [['a', 1], ['b', 2]],
  );
  await c.close();
});

test('t55b a WebSocket write shows up in /sync deltas and queries', async () => {
  const c = await connect(node);
  c.send({ type: 'OP_BATCH', payload: { ops: [putOp(1, 'h55b', 'k1', { v: 'ws' })] } });
  await c.expect('OP_ACK');
  await c.close();
  const r = await post(node, {
    ...base(),
    syncMaps: [{ mapName: 'h55b', lastSyncTimestamp: { millis: 0, counter: 0, nodeId: '' } }],
    queries: [{ queryId: 'q1', mapName: 'h55b', filter: { v: 'ws' } }],
  });
  assert.equal(r.status, 200, r.text);
  const d = r.body.deltas.find((x) => x.mapName === 'h55b');
  assert.deepEqual(d.records.map((x) => [x.key, x.eventType, x.record.value.v]), [['k1', 'PUT', 'ws']]);
  assert.equal(r.body.queryResults[0].queryId, 'q1');
  assert.deepEqual(r.body.queryResults[0].results, [{ key: 'k1', value: { v: 'ws' } }]);
});

test('t55c deltas hold only records stamped after lastSyncTimestamp, removals as REMOVE', async () => {
  const old = { millis: Date.now() - 60_000, counter: 0, nodeId: 'w' };
  const mid = { millis: Date.now() - 30_000, counter: 0, nodeId: 'w' };
  const recent = { millis: Date.now() - 10_000, counter: 0, nodeId: 'w' };
  const op = (id, key, value, timestamp) => ({ id: String(id), mapName: 'h55c', key, record: { value, timestamp } });
  let r = await post(node, {
    ...base(),
    operations: [op(1, 'old', { x: 1 }, old), op(2, 'new', { x: 2 }, recent), op(3, 'gone', { x: 3 }, old)],
  });
  assert.equal(r.status, 200, r.text);
  r = await post(node, { ...base(), operations: [op(4, 'gone', null, recent)] });
  assert.equal(r.body.ack.lastId, '4', r.text);

  r = await post(node, { ...base(), syncMaps: [{ mapName: 'h55c', lastSyncTimestamp: mid }] });
  const d = r.body.deltas[0];
  assert.deepEqual(
    d.records.map((x) => [x.key, x.eventType]).sort(),
    [['gone', 'REMOVE'], ['new', 'PUT']],
    'the record stamped before lastSyncTimestamp is left out',
  );
  assert.equal(d.records.find((x) => x.key === 'gone').record.value, null);
  assert.ok(d.serverSyncTimestamp.millis > recent.millis - 1, 'serverSyncTimestamp moves past what was sent');

  // Nothing changed since serverSyncTimestamp... except writes inside its
  // overlap window, which are sent again: stamp the next write well after.
  r = await post(node, { ...base(), syncMaps: [{ mapName: 'h55c', lastSyncTimestamp: { millis: Date.now() + 1000, counter: 0, nodeId: '' } }] });
  assert.deepEqual(r.body.deltas[0].records, []);
});

test('t55d the fixture request gets a response of the fixture shape', async () => {
  const request = readFileSync(join(FIXTURES, 'HTTP_SYNC_REQUEST.msgpack'));
  const want = JSON.parse(readFileSync(join(FIXTURES, 'HTTP_SYNC_RESPONSE.json'), 'utf8'));
  let r = await post(node, request);
  assert.equal(r.status, 200, r.text);
  // The fixture's lastSyncTimestamp (2023) is older than the 30-day
  // tombstone retention: the node says removals may be missing.
  assert.deepEqual(r.body.errors.map((e) => [e.code, e.context]), [[410, 'users']]);
  assert.match(r.body.errors[0].message, /tombstone retention/);
  delete r.body.errors;
  assert.deepEqual(Object.keys(r.body).sort(), Object.keys(want).sort());
  assert.equal(r.body.ack.lastId, want.ack.lastId);
  assert.equal(r.body.deltas[0].mapName, 'users');
  // The fixture's lastSyncTimestamp equals its op's timestamp: not after it.
  assert.deepEqual(r.body.deltas[0].records, []);
  // One millisecond earlier, the record comes back as the fixture shows it.
  const req = unpack(request);
  req.syncMaps[0].lastSyncTimestamp.millis -= 1;
  r = await post(node, req);
  const rec = r.body.deltas[0].records.find((x) => x.key === 'user-1');
  assert.deepEqual(
    { ...rec, record: { value: rec.record.value, timestamp: rec.record.timestamp } },
    want.deltas[0].records[0],
  );
  assert.deepEqual(Object.keys(r.body.deltas[0]).sort(), Object.keys(want.deltas[0]).sort());
});

test('t55e queries page with limit, offset and cursor; searches are answered', async () => {
  const ops = [];
  for (let i = 0; i < 5; i++) ops.push(putOp(i + 1, 'h55e', `k${i}`, { i, tag: i % 2 ? 'odd' : 'even' }));
  ops.push(putOp(10, 'articles', 'a1', { title: 'Async Rust', body: 'futures in rust' }));
  ops.push(putOp(11, 'articles', 'a2', { title: 'Gardening', body: 'tomatoes' }));
  let r = await post(node, { ...base(), operations: ops });
  assert.equal(r.status, 200, r.text);
  r = await post(node, {
    ...base(),
    queries: [
      { queryId: 'page1', mapName: 'h55e', filter: null, limit: 2 },
      { queryId: 'skip', mapName: 'h55e', limit: 2, offset: 2 },
      { queryId: 'even', mapName: 'h55e', filter: { tag: 'even' } },
      { queryId: 'bad', mapName: 'h55e', filter: 'nope' },
      { queryId: 'badcursor', mapName: 'h55e', cursor: 'garbage' },
    ],
  });
  assert.equal(r.status, 200, r.text);
  const q = Object.fromEntries(r.body.queryResults.map((x) => [x.queryId, x]));
  assert.deepEqual(q.page1.results.map((x) => x.key), ['k0', 'k1']);
  assert.equal(q.page1.hasMore, true);
  assert.deepEqual(q.skip.results.map((x) => x.key), ['k2', 'k3']);
  assert.deepEqual(q.even.results.map((x) => x.key), ['k0', 'k2', 'k4']);
  assert.equal(q.bad, undefined);
  const errs = Object.fromEntries(r.body.errors.map((e) => [e.context, e]));
  assert.equal(errs.bad.code, 400);
  assert.match(errs.bad.message, /filter must be a map/);
  assert.equal(errs.badcursor.code, 400);
  assert.match(errs.badcursor.message, /invalid or expired cursor/);
  // The next page from the cursor.
  r = await post(node, { ...base(), queries: [{ queryId: 'page2', mapName: 'h55e', limit: 2, cursor: q.page1.nextCursor }] });
  assert.deepEqual(r.body.queryResults[0].results.map((x) => x.key), ['k2', 'k3']);

  // Searches: the index is updated beside the write path; ask until caught up.
  const deadline = Date.now() + 10_000;
  let s;
  for (;;) {
    r = await post(node, { ...base(), searches: [{ searchId: 's1', mapName: 'articles', query: 'rust' }, { searchId: 's2', mapName: 'no-index', query: 'x' }] });
    s = r.body.searchResults.find((x) => x.searchId === 's1');
    if (s?.results.length === 1 || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(s.results.map((x) => x.key), ['a1']);
  assert.equal(s.totalCount, 1);
  assert.ok(s.results[0].score > 0);
  assert.ok(r.body.errors.some((e) => e.context === 's2'), JSON.stringify(r.body.errors));
});

test('t55j grouped queries (groupBy / aggregations) answer the group rows a grouped QUERY_SUB snapshot holds', async () => {
  const ops = [];
  const rows = [
    ['a', { status: 'open', category: 'x', price: 3 }],
    ['b', { status: 'open', category: 'x', price: 7.5 }],
    ['c', { status: 'open', category: 'y', price: 1 }],
    ['d', { status: 'done', category: 'y', price: 100 }],
    ['e', { status: 'open', category: 1, price: 'n/a' }],
    ['f', { status: 'open', price: 2 }],
  ];
  rows.forEach(([k, v], i) => ops.push(putOp(i + 1, 'h55j', k, v)));
  let r = await post(node, { ...base(), operations: ops });
  assert.equal(r.status, 200, r.text);
  const groupBy = ['category'];
  const aggregations = [
    { func: 'count' },
    { func: 'sum', field: 'price' },
    { func: 'avg', field: 'price' },
    { func: 'min', field: 'price' },
    { func: 'max', field: 'price' },
  ];
  const c = await connect(node);
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'ws', mapName: 'h55j', query: { where: { status: 'open' }, groupBy, aggregations } } });
  const snap = await c.expect('QUERY_RESP', (m) => m.payload.queryId === 'ws');
  assert.equal(snap.payload.results.length, 4, JSON.stringify(snap.payload.results));
  await c.close();
  r = await post(node, {
    ...base(),
    queries: [
      { queryId: 'all', mapName: 'h55j', filter: { status: 'open' }, groupBy, aggregations },
      { queryId: 'page', mapName: 'h55j', filter: { status: 'open' }, groupBy, aggregations, offset: 1, limit: 2 },
      { queryId: 'count', mapName: 'h55j', aggregations: [{ func: 'count' }] },
      { queryId: 'cursor', mapName: 'h55j', groupBy, cursor: 'x' },
      { queryId: 'badfunc', mapName: 'h55j', groupBy, aggregations: [{ func: 'median', field: 'price' }] },
    ],
  });
  assert.equal(r.status, 200, r.text);
  const q = Object.fromEntries(r.body.queryResults.map((x) => [x.queryId, x]));
  assert.deepEqual(q.all.results, snap.payload.results, 'the same rows, in the same order');
  assert.equal(q.all.hasMore, undefined);
  assert.deepEqual(q.page.results, snap.payload.results.slice(1, 3));
  assert.equal(q.page.hasMore, true);
  assert.equal(q.count.results.length, 1);
  assert.equal(q.count.results[0].value.__count, rows.length);
  const errs = Object.fromEntries(r.body.errors.map((e) => [e.context, e]));
  assert.equal(errs.cursor.code, 400);
  assert.match(errs.cursor.message, /cursor: not supported with groupBy/);
  assert.equal(errs.badfunc.code, 400);
  assert.match(errs.badfunc.message, /median/);
});

test('t55f a refused op is an errors entry and ack stops before it', async () => {
  const r = await post(node, {
    ...base(),
    operations: [putOp(1, 'h55f', 'ok', 1), putOp(2, '__hangar_x', 'k', 1), putOp(3, 'h55f', 'ok2', 1)],
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.ack.lastId, '1');
  assert.deepEqual(r.body.ack.results.map((x) => x.success), [true, false, true]);
  assert.equal(r.body.errors.length, 1);
  assert.equal(r.body.errors[0].context, '2');
  assert.equal(r.body.errors[0].code, 403);
});

test('t55g auth: 401 without or with a bad token, 200 with a good one', async () => {
  let r = await post(authNode, base());
  assert.equal(r.status, 401);
  assert.match(r.body.message, /authentication required/);
  r = await post(authNode, base(), { authorization: 'Bearer undefined' });
  assert.equal(r.status, 401);
  r = await post(authNode, base(), { authorization: `Bearer ${jwt('wrong', { sub: 'm', exp: inSeconds(60) })}` });
  assert.equal(r.status, 401);
  assert.match(r.body.message, /authentication failed/);
  const good = jwt(SECRET, { sub: 'alice', exp: inSeconds(600) });
  r = await post(authNode, { ...base(), operations: [putOp(1, 'h55g', 'k', 1)] }, { authorization: `Bearer ${good}` });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.ack.lastId, '1');
});

test('t55h limits: 413 over 2 MiB, 400 for nesting too deep and for garbage', async () => {
  // The node reads a body over the limit to its end before refusing it, so
  // the client gets the 413 rather than a reset connection, every time.
  const big = { ...base(), operations: [putOp(1, 'h55h', 'k', 'x'.repeat(2 * 1024 * 1024 + 10))] };
  let r;
  for (let i = 0; i < 8; i++) {
    r = await post(node, big);
    assert.equal(r.status, 413);
    assert.match(r.body.message, /exceeds the 2097152-byte limit/);
  }

  let deep = 0;
  for (let i = 0; i < 300; i++) deep = [deep];
  r = await post(node, { ...base(), queries: [{ queryId: 'd', mapName: 'm', filter: { a: deep } }] });
  assert.equal(r.status, 400);
  assert.match(r.body.message, /nesting exceeds 256 levels/);

  r = await post(node, Buffer.from([0xc1, 0x00, 0xff]));
  assert.equal(r.status, 400);
  assert.match(r.body.message, /invalid MsgPack body/);

  r = await post(node, { clientId: 7, clientHlc: ts() });
  assert.equal(r.status, 400);
  assert.match(r.body.message, /HTTP_SYNC_REQUEST/);

  r = await post(node, Buffer.alloc(0));
  assert.equal(r.status, 200, 'an empty body is an empty request');
  assert.equal(typeof r.body.serverHlc.millis, 'number');
});

test('t55i the rate limit charges a request its number of operations, per client address', async () => {
  const ops = (n, from) => Array.from({ length: n }, (_, i) => putOp(from + i, 'h55i', `k${from + i}`, i));
  let r = await post(limitedNode, { ...base(), operations: ops(8, 1) });
  assert.equal(r.status, 200, r.text);
  r = await post(limitedNode, { ...base(), operations: ops(8, 100) });
  assert.equal(r.status, 429, 'a burst of 10 does not pay 8 + 8 operations');
  assert.match(r.body.message, /rate limit exceeded: a request of 8 operations/);
  r = await post(limitedNode, { ...base(), operations: ops(1, 200) });
  assert.equal(r.status, 200, 'the refused request took nothing: 2 tokens are left');
});
