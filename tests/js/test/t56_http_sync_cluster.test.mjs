// POST /sync on a real 3-node cluster (three `hangar` processes on
// loopback): writes sent to one node land on every owner, and deltas and
// queries asked of another node cover every partition. After `kill -9` of
// a node, a delta is either complete or an `errors` entry for its map,
// never a silent part of the map.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, ts, pack, unpack, freePort } from '../lib/hangar.mjs';

async function post(n, body) {
  const res = await fetch(`${n.http}/sync`, { method: 'POST', body: pack(body) });
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, bytes.toString());
  return unpack(bytes);
}

const ids = ['h1', 'h2', 'h3'];
let nodes = {};

before(async () => {
  const ports = await Promise.all(ids.map(() => freePort()));
  nodes = Object.fromEntries(
    await Promise.all(
      ids.map(async (id, i) => [
        id,
        await startNode({
          env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
          args: [
            '--node-id', id,
            '--cluster-id', 'js-http-sync',
            '--cluster-port', String(ports[i]),
            '--seed-nodes', ports.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`).join(','),
            '--advertise-host', '127.0.0.1',
          ],
        }),
      ]),
    ),
  );
  // Wait for a map where all three nodes are ACTIVE and own partitions.
  const c = await connect(nodes.h1);
  const deadline = Date.now() + 30_000;
  for (;;) {
    c.send({ type: 'PARTITION_MAP_REQUEST', payload: { currentVersion: 0 } });
    const { payload: m } = await c.expect('PARTITION_MAP');
    const active = m.nodes.filter((n) => n.status === 'ACTIVE').length;
    const owners = new Set(m.partitions.map((p) => p.ownerNodeId));
    if (active === 3 && owners.size === 3) break;
    assert.ok(Date.now() < deadline, 'no complete 3-node map within 30 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  await c.close();
});

after(async () => {
  await Promise.all(Object.values(nodes).map((n) => n.stop()));
});

const base = () => ({ clientId: 'http-cluster', clientHlc: ts('http-cluster') });
const KEYS = Array.from({ length: 60 }, (_, i) => `key-${i}`);
const since = { millis: 0, counter: 0, nodeId: '' };

test('t56 writes to one node, deltas and queries from others cover every partition', async () => {
  const ops = KEYS.map((key, i) => ({ id: String(i + 1), mapName: 'hc', key, record: { value: { i }, timestamp: ts('w') } }));
  const w = await post(nodes.h1, { ...base(), operations: ops });
  assert.equal(w.errors, undefined, JSON.stringify(w.errors));
  assert.equal(w.ack.lastId, '60');
  assert.ok(w.ack.results.every((r) => r.success));

  const d = await post(nodes.h2, { ...base(), syncMaps: [{ mapName: 'hc', lastSyncTimestamp: since }] });
  assert.equal(d.errors, undefined, JSON.stringify(d.errors));
  assert.deepEqual(d.deltas[0].records.map((r) => r.key).sort(), [...KEYS].sort());

  const q = await post(nodes.h3, { ...base(), queries: [{ queryId: 'all', mapName: 'hc' }] });
  assert.equal(q.errors, undefined, JSON.stringify(q.errors));
  assert.deepEqual(q.queryResults[0].results.map((r) => r.key).sort(), [...KEYS].sort());
});

test('t56b after kill -9 of a node a delta is complete or an errors entry, never partial', async () => {
  nodes.h3.proc.kill('SIGKILL');
  await nodes.h3.exited;
  const deadline = Date.now() + 20_000;
  let complete = 0;
  let refused = 0;
  while (Date.now() < deadline && complete === 0) {
    const d = await post(nodes.h1, { ...base(), syncMaps: [{ mapName: 'hc', lastSyncTimestamp: since }] });
    const delta = d.deltas.find((x) => x.mapName === 'hc');
    if (delta) {
      assert.deepEqual(delta.records.map((r) => r.key).sort(), [...KEYS].sort(), 'a delta that is given is whole');
      complete++;
    } else {
      const e = (d.errors ?? []).find((x) => x.context === 'hc');
      assert.ok(e, `no delta and no error for the map: ${JSON.stringify(d)}`);
      assert.ok(e.code >= 500, JSON.stringify(e));
      refused++;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  console.log(`# t56b: refused ${refused} times before a complete delta`);
  assert.equal(complete, 1, `the surviving nodes serve the whole map again (refused ${refused} times first)`);
});
