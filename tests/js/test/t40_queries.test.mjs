// Live queries (QUERY_SUB → QUERY_RESP, then QUERY_UPDATE ENTER / UPDATE /
// LEAVE; QUERY_UNSUB) and full-text search (SEARCH → SEARCH_RESP; live:
// SEARCH_SUB → SEARCH_RESP, then SEARCH_UPDATE; SEARCH_UNSUB).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, putOp } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await startNode({
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
    config: '[storage.full_text_search.articles]\nfields = ["title", "body"]\n',
  });
});
after(async () => {
  await node?.stop();
});

let opId = 0;
async function write(c, map, key, value) {
  const id = ++opId;
  c.send({ type: 'CLIENT_OP', payload: putOp(id, map, key, value) });
  const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === String(id));
  assert.equal(ack.payload.results[0].success, true, JSON.stringify(ack.payload));
}

test('t40 QUERY_SUB answers a snapshot page with nextCursor and hasMore, and the cursor gets the next page', async () => {
  const c = await connect(node);
  for (const [k, age] of [['u1', 25], ['u2', 35], ['u3', 45], ['u4', 55], ['u5', 15]]) {
    await write(c, 'q40', k, { name: k, age });
  }
  const query = { predicate: { op: 'gt', attribute: 'age', value: 20 }, sort: [{ field: 'age', direction: 'asc' }], limit: 2 };
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'p1', mapName: 'q40', query } });
  const first = await c.expect('QUERY_RESP', (m) => m.payload.queryId === 'p1');
  assert.equal(first.payload.error, undefined, JSON.stringify(first.payload));
  assert.deepEqual(first.payload.results.map((r) => r.key), ['u1', 'u2']);
  assert.deepEqual(first.payload.results[0].value, { name: 'u1', age: 25 });
  assert.equal(first.payload.hasMore, true);
  assert.equal(typeof first.payload.nextCursor, 'string');
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'p2', mapName: 'q40', query: { ...query, cursor: first.payload.nextCursor } } });
  const second = await c.expect('QUERY_RESP', (m) => m.payload.queryId === 'p2');
  assert.deepEqual(second.payload.results.map((r) => r.key), ['u3', 'u4']);
  assert.equal(second.payload.cursorStatus, 'valid');
  await c.close();
});

test('t41 QUERY_UPDATE reports ENTER, UPDATE and LEAVE for writes of another client', async () => {
  const sub = await connect(node);
  const w = await connect(node);
  await write(w, 'q41', 'old', { status: 'active', n: 0 });
  const query = { where: { status: 'active' } };
  sub.send({ type: 'QUERY_SUB', payload: { queryId: 'live', mapName: 'q41', query } });
  const snap = await sub.expect('QUERY_RESP');
  assert.deepEqual(snap.payload.results.map((r) => r.key), ['old']);

  await write(w, 'q41', 'new', { status: 'active', n: 1 });
  const enter = await sub.expect('QUERY_UPDATE', (m) => m.payload.key === 'new');
  assert.deepEqual({ t: enter.payload.changeType, q: enter.payload.queryId, v: enter.payload.value }, { t: 'ENTER', q: 'live', v: { status: 'active', n: 1 } });

  await write(w, 'q41', 'new', { status: 'active', n: 2 });
  const upd = await sub.expect('QUERY_UPDATE', (m) => m.payload.key === 'new');
  assert.equal(upd.payload.changeType, 'UPDATE');
  assert.equal(upd.payload.value.n, 2);

  await write(w, 'q41', 'new', { status: 'archived', n: 3 });
  const leave = await sub.expect('QUERY_UPDATE', (m) => m.payload.key === 'new');
  assert.equal(leave.payload.changeType, 'LEAVE');

  await write(w, 'q41', 'unrelated', { status: 'archived' });
  await sub.barrier();
  assert.equal(sub.pending('QUERY_UPDATE').length, 0, 'a non-matching write is no update');
  await sub.close();
  await w.close();
});

test('t42 after QUERY_UNSUB no more updates or events arrive', async () => {
  const sub = await connect(node);
  const w = await connect(node);
  sub.send({ type: 'QUERY_SUB', payload: { queryId: 'gone', mapName: 'q42', query: {} } });
  await sub.expect('QUERY_RESP');
  await write(w, 'q42', 'a', { x: 1 });
  await sub.expect('QUERY_UPDATE');
  await sub.expect('SERVER_EVENT');
  sub.send({ type: 'QUERY_UNSUB', payload: { queryId: 'gone' } });
  await sub.barrier(); // the UNSUB was processed
  await write(w, 'q42', 'b', { x: 2 });
  await sub.barrier();
  assert.equal(sub.pending('QUERY_UPDATE').length, 0);
  assert.equal(sub.pending('SERVER_EVENT').length, 0);
  await sub.close();
  await w.close();
});

test('t43 a bad query is answered with QUERY_RESP carrying an error', async () => {
  const c = await connect(node);
  c.send({ type: 'QUERY_SUB', payload: { queryId: 'bad', mapName: 'q43', query: { sort: 42 } } });
  const r = await c.expect('QUERY_RESP');
  assert.equal(r.payload.results.length, 0);
  assert.ok(r.payload.error, JSON.stringify(r.payload));
  assert.ok(r.payload.code >= 400);
  await c.close();
});

test('t44 SEARCH ranks documents of a map with full-text search configured', async () => {
  const c = await connect(node);
  await write(c, 'articles', 'a1', { title: 'Async Rust', body: 'futures and executors in rust' });
  await write(c, 'articles', 'a2', { title: 'Gardening', body: 'tomatoes need sun' });
  await write(c, 'articles', 'a3', { title: 'Rust ownership', body: 'borrowing explained' });
  const deadline = Date.now() + 10_000;
  let resp;
  // The index is updated beside the write path: ask until it has caught up.
  for (;;) {
    c.send({ type: 'SEARCH', payload: { requestId: 's1', mapName: 'articles', query: 'rust', options: { limit: 10 } } });
    resp = await c.expect('SEARCH_RESP', (m) => m.payload.requestId === 's1');
    assert.equal(resp.payload.error, undefined, JSON.stringify(resp.payload));
    if (resp.payload.results.length === 2 || Date.now() > deadline) break;
    await c.barrier();
  }
  assert.deepEqual(resp.payload.results.map((r) => r.key).sort(), ['a1', 'a3']);
  assert.equal(resp.payload.totalCount, 2);
  for (const r of resp.payload.results) {
    assert.ok(r.score > 0);
    assert.ok(r.matchedTerms.length > 0);
    assert.equal(typeof r.value.title, 'string');
  }
  c.send({ type: 'SEARCH', payload: { requestId: 's2', mapName: 'no-index', query: 'rust' } });
  const err = await c.expect('SEARCH_RESP', (m) => m.payload.requestId === 's2');
  assert.ok(err.payload.error, 'a map without an index is an error');
  await c.close();
});

test('t45 SEARCH_SUB answers SEARCH_RESP (requestId = subscriptionId), then SEARCH_UPDATE ENTER / UPDATE / LEAVE; SEARCH_UNSUB stops it', async () => {
  const sub = await connect(node);
  const w = await connect(node);
  await write(w, 'articles', 'z1', { title: 'Zebra facts', body: 'the zebra has stripes' });
  sub.send({ type: 'SEARCH_SUB', payload: { subscriptionId: 'ls1', mapName: 'articles', query: 'zebra', options: { limit: 10 } } });
  const first = await sub.expect('SEARCH_RESP', (m) => m.payload.requestId === 'ls1');
  assert.equal(first.payload.error, undefined, JSON.stringify(first.payload));
  assert.deepEqual(first.payload.results.map((r) => r.key), ['z1']);
  const z1Score = first.payload.results[0].score;

  const upd = (key, type) =>
    sub
      .expect('SEARCH_UPDATE', (m) => m.payload.subscriptionId === 'ls1' && m.payload.key === key && m.payload.changeType === type)
      .catch((e) => {
        throw new Error(`${type} of ${key}: ${e.message}; pending: ${JSON.stringify(sub.pending('SEARCH_UPDATE').map((m) => m.payload))}`);
      });
  await write(w, 'articles', 'z2', { title: 'Zebra zebra', body: 'more zebra' });
  const enter = await upd('z2', 'ENTER');
  assert.ok(enter.payload.score > 0);
  assert.deepEqual(enter.payload.matchedTerms, ['zebra']);
  assert.equal(enter.payload.value.title, 'Zebra zebra');

  // A document that changes its text changes score: UPDATE.
  await write(w, 'articles', 'z1', { title: 'Zebra facts', body: 'the zebra has stripes; a zebra runs' });
  const changed = await upd('z1', 'UPDATE');
  assert.notEqual(changed.payload.score, z1Score);

  // Stops matching: LEAVE with score 0; deleted: LEAVE.
  await write(w, 'articles', 'z2', { title: 'Horses', body: 'no stripes here' });
  const left = await upd('z2', 'LEAVE');
  assert.equal(left.payload.score, 0);
  assert.equal(left.payload.value, null);
  w.send({ type: 'CLIENT_OP', payload: { id: String(++opId), mapName: 'articles', key: 'z1', opType: 'REMOVE' } });
  await w.expect('OP_ACK', (m) => m.payload.lastId === String(opId));
  await upd('z1', 'LEAVE');
  // Rescoring moves other documents too (UPDATEs of z1 after z2 came in);
  // the run that sent this LEAVE saw every write before it.
  sub.take('SEARCH_UPDATE');

  // After SEARCH_UNSUB, ls1 hears nothing, while a second live search does.
  sub.send({ type: 'SEARCH_UNSUB', payload: { subscriptionId: 'ls1' } });
  sub.send({ type: 'SEARCH_SUB', payload: { subscriptionId: 'ls2', mapName: 'articles', query: 'zebra' } });
  await sub.expect('SEARCH_RESP', (m) => m.payload.requestId === 'ls2');
  await write(w, 'articles', 'z3', { title: 'A zebra', body: 'zebra' });
  await sub.expect('SEARCH_UPDATE', (m) => m.payload.subscriptionId === 'ls2' && m.payload.key === 'z3');
  await sub.barrier();
  assert.deepEqual(sub.pending('SEARCH_UPDATE').filter((m) => m.payload.subscriptionId === 'ls1'), []);
  await sub.close();
  await w.close();
});

test('t46 SEARCH_SUB on a map without full-text search is answered with an error', async () => {
  const c = await connect(node);
  c.send({ type: 'SEARCH_SUB', payload: { subscriptionId: 'nope', mapName: 'no-index', query: 'rust' } });
  const r = await c.expect('SEARCH_RESP', (m) => m.payload.requestId === 'nope');
  assert.ok(r.payload.error, JSON.stringify(r.payload));
  await c.close();
});
