// Live search on a 3-node cluster: SEARCH_SUB on one node answers from
// every partition, then follows (SEARCH_UPDATE ENTER / UPDATE / LEAVE)
// writes and deletes sent to the other two nodes.
//
// The cluster is used once every node is ACTIVE and owns partitions. A
// settled map can still change while backups are restored, and updates
// from other nodes arrive after the writers' acknowledgements, so the
// client's view is compared with the expected one until it settles
// (bounded), never after a fixed sleep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { connect, putOp, rng, startCluster, waitForCompleteMap } from '../lib/hangar.mjs';

let opId = 0;
async function write(c, map, key, value) {
  const id = String(++opId);
  const op = value === undefined ? { id, mapName: map, key, opType: 'REMOVE' } : putOp(id, map, key, value);
  c.send({ type: 'CLIENT_OP', payload: op });
  const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === id);
  assert.equal(ack.payload.results[0].success, true, JSON.stringify(ack.payload));
}

const WORDS = ['zebra', 'horse', 'stripes', 'savanna', 'grass', 'river'];

/** The client's live result set: key → value, from SEARCH_RESP then
 * SEARCH_UPDATEs (checked as they come: no ENTER for a key it has, no
 * UPDATE or LEAVE for one it lacks). */
class SearchView {
  constructor(resp) {
    this.rows = new Map(resp.payload.results.map((r) => [r.key, r.value]));
  }

  apply(c, what) {
    for (const m of c.take('SEARCH_UPDATE')) {
      const { key, value, changeType, score } = m.payload;
      if (changeType === 'ENTER') assert.ok(!this.rows.has(key), `${what}: ENTER for a key the client has: ${key}`);
      else assert.ok(this.rows.has(key), `${what}: ${changeType} for a key the client lacks: ${key}`);
      if (changeType === 'LEAVE') this.rows.delete(key);
      else {
        assert.ok(score > 0, `${what}: ${changeType} of ${key} with score ${score}`);
        this.rows.set(key, value);
      }
    }
    return Object.fromEntries([...this.rows.keys()].sort().map((k) => [k, this.rows.get(k)]));
  }
}

/** What the live search must hold: the documents that mention zebra. */
function expected(docs) {
  const out = {};
  for (const k of [...docs.keys()].sort()) {
    const d = docs.get(k);
    if (`${d.title} ${d.body}`.split(' ').includes('zebra')) out[k] = d;
  }
  return out;
}

/** Waits (bounded) until the view equals `want`; returns the last view. */
async function settle(view, c, want, what, ms = 15_000) {
  const until = Date.now() + ms;
  let got = view.apply(c, what);
  while (!isDeepStrictEqual(got, want) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    got = view.apply(c, what);
  }
  return got;
}

test('t47 cluster: SEARCH_SUB on one of 3 nodes covers every partition and follows writes and deletes sent to the others', async () => {
  const ids = ['s1', 's2', 's3'];
  const nodes = await startCluster(ids, 'js-live-search', {
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
    config: '[storage.full_text_search.docs47]\nfields = ["title", "body"]\n',
  });
  try {
    const [sub, w1, w3] = await Promise.all([connect(nodes[1]), connect(nodes[0]), connect(nodes[2])]);
    // Wait for a map where all three nodes are ACTIVE and own partitions.
    await waitForCompleteMap(sub, 3);
    const next = rng(47);
    const doc = () => {
      const words = Array.from({ length: 2 + Math.floor(next() * 4) }, () => WORDS[Math.floor(next() * WORDS.length)]);
      return { title: words[0], body: words.slice(1).join(' ') };
    };
    const map = 'docs47';
    const docs = new Map();
    for (let i = 0; i < 24; i++) {
      const d = doc();
      docs.set(`d${i}`, d);
      await write(i % 2 ? w1 : w3, map, `d${i}`, d);
    }
    sub.send({ type: 'SEARCH_SUB', payload: { subscriptionId: 'c47', mapName: map, query: 'zebra', options: { limit: 1000 } } });
    const snap = await sub.expect('SEARCH_RESP', (m) => m.payload.requestId === 'c47');
    assert.equal(snap.payload.error, undefined, JSON.stringify(snap.payload));
    const view = new SearchView(snap);
    // Writes acknowledged before the subscription are in the snapshot or
    // follow as updates (an index on another node may lag its write).
    let want = expected(docs);
    assert.ok(Object.keys(want).length > 3, 'the seed gives several matches');
    assert.deepEqual(await settle(view, sub, want, 'snapshot'), want, 'snapshot over every partition');
    for (let step = 0; step < 50; step++) {
      const key = `d${Math.floor(next() * 32)}`;
      const w = next() < 0.5 ? w1 : w3;
      if (next() < 0.25) {
        docs.delete(key);
        await write(w, map, key, undefined);
      } else {
        const d = doc();
        docs.set(key, d);
        await write(w, map, key, d);
      }
    }
    want = expected(docs);
    assert.deepEqual(await settle(view, sub, want, 'live'), want);
    await Promise.all([sub.close(), w1.close(), w3.close()]);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});
