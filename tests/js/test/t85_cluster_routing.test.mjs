// A client in cluster mode, as the TopGun client's ClusterClient routes:
// it connects to a seed, authenticates, asks for PARTITION_MAP, connects to
// every ACTIVE / JOINING node at its advertised `endpoints.websocket`, and
// sends one OP_BATCH per owner (partition = fnv1a(key) % 271) with
// `_routing: {partitionId, mapVersion}`. Shown here on a real 3-node
// cluster (three `hangar` processes on loopback):
// - every write lands on its owner: no node forwards anything
//   (`hangar_cluster_forwarded_ops_total` stays absent or 0);
// - after `kill -9` of a node, the surviving nodes push a newer map,
//   unasked, that gives the dead node nothing; the client re-routes by it
//   and every key is writable again, still without forwarding.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, jwt, inSeconds, ts, freePort } from '../lib/hangar.mjs';

const SECRET = 'cluster-routing-secret';
const PARTITIONS = 271;
const token = () => jwt(SECRET, { sub: 'router', roles: ['ADMIN'], exp: inSeconds(3600) });

/** FNV-1a over UTF-16 code units, as the TopGun client hashes keys. */
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
const partitionOf = (key) => fnv1a(key) % PARTITIONS;

async function forwarded(node) {
  const text = await (await fetch(`${node.http}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('hangar_cluster_forwarded_ops_total'))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).pop()), 0);
}

const ids = ['r1', 'r2', 'r3'];
let nodes = {};

before(async () => {
  const ports = await Promise.all(ids.map(() => freePort()));
  nodes = Object.fromEntries(
    await Promise.all(
      ids.map(async (id, i) => [
        id,
        await startNode({
          env: { JWT_SECRET: SECRET, STORAGE_BACKEND: 'memory' },
          args: [
            '--node-id', id,
            '--cluster-id', 'js-routing',
            '--cluster-port', String(ports[i]),
            '--seed-nodes', ports.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`).join(','),
            '--advertise-host', '127.0.0.1',
          ],
        }),
      ]),
    ),
  );
});

after(async () => {
  await Promise.all(Object.values(nodes).map((n) => n.stop()));
});

/** A routing client: one authenticated connection per node of the map. */
class ClusterClient {
  constructor() {
    this.conns = new Map();
    this.map = null;
  }

  async open(url) {
    const c = await connect(null, { url });
    c.send({ type: 'AUTH', token: token() });
    await c.expect('AUTH_ACK');
    return c;
  }

  /** Connects to a seed and waits for a map that lists `members` nodes, all
   * ACTIVE, each owning partitions (a new node gets its share by transfer,
   * over several map versions). */
  async start(seedUrl, members) {
    const seed = await this.open(seedUrl);
    const deadline = Date.now() + 30_000;
    for (;;) {
      seed.send({ type: 'PARTITION_MAP_REQUEST', payload: { currentVersion: 0 } });
      const { payload: m } = await seed.expect('PARTITION_MAP');
      const active = m.nodes.filter((n) => n.status === 'ACTIVE').map((n) => n.nodeId);
      const owners = new Set(m.partitions.map((p) => p.ownerNodeId));
      if (active.length === members && owners.size === members && [...owners].every((o) => active.includes(o))) {
        await this.apply(m);
        break;
      }
      assert.ok(Date.now() < deadline, `no complete ${members}-node map within 30 s: ${JSON.stringify(active)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await seed.close();
  }

  /** Applies a map as the client does: older or equal versions are ignored;
   * ACTIVE / JOINING nodes are connected, nodes no longer listed dropped. */
  async apply(m) {
    if (this.map && m.version <= this.map.version) return false;
    this.map = m;
    const listed = new Set();
    for (const n of m.nodes) {
      if (n.status !== 'ACTIVE' && n.status !== 'JOINING') continue;
      listed.add(n.nodeId);
      if (!this.conns.has(n.nodeId)) this.conns.set(n.nodeId, await this.open(n.endpoints.websocket));
    }
    for (const [id, c] of this.conns) {
      if (!listed.has(id)) {
        c.close();
        this.conns.delete(id);
      }
    }
    return true;
  }

  ownerOf(key) {
    return this.map.partitions[partitionOf(key)].ownerNodeId;
  }

  /** One OP_BATCH per owner; resolves with the acks by owner. */
  async write(keys, value, concern = 'APPLIED') {
    const byOwner = new Map();
    for (const key of keys) {
      const owner = this.ownerOf(key);
      if (!byOwner.has(owner)) byOwner.set(owner, []);
      byOwner.get(owner).push(key);
    }
    const acks = await Promise.all(
      [...byOwner].map(async ([owner, ks]) => {
        const c = this.conns.get(owner);
        assert.ok(c, `no connection to owner ${owner}`);
        const ops = ks.map((key, i) => ({
          id: `${owner}-${Date.now()}-${i}`,
          mapName: 'routed',
          key,
          record: { value, timestamp: ts('router') },
        }));
        const lastId = ops[ops.length - 1].id;
        c.send({
          type: 'OP_BATCH',
          payload: { ops, writeConcern: concern, timeout: 5000 },
          _routing: { partitionId: partitionOf(ks[0]), mapVersion: this.map.version },
        });
        const ack = await c.expect('OP_ACK', (m) => m.payload.lastId === lastId, 15_000);
        return [owner, ack.payload];
      }),
    );
    return new Map(acks);
  }

  close() {
    for (const c of this.conns.values()) c.close();
  }
}

test('t85 a routing client writes every key to its owner and nothing is forwarded; after kill -9 the pushed map re-routes', async () => {
  const client = new ClusterClient();
  await client.start(nodes.r1.url, 3);
  assert.equal(client.conns.size, 3, 'connected to every member from the map');

  const keys = Array.from({ length: 300 }, (_, i) => `rk-${i}`);
  const owners = new Set(keys.map((k) => client.ownerOf(k)));
  assert.equal(owners.size, 3, 'the keys span all three owners');
  const acks = await client.write(keys, { v: 1 }, 'REPLICATED');
  assert.equal(acks.size, 3, 'one OP_BATCH per owner');
  for (const [owner, ack] of acks) {
    assert.ok(ack.results.every((r) => r.success), `${owner}: ${JSON.stringify(ack.results.find((r) => !r.success))}`);
  }
  for (const id of ids) assert.equal(await forwarded(nodes[id]), 0, `${id} forwarded nothing`);

  // Kill a node that owns keys; the survivors push a newer map unasked.
  const victim = 'r3';
  const before = client.map.version;
  nodes[victim].proc.kill('SIGKILL');
  await nodes[victim].exited;
  const survivor = client.conns.get('r1');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { payload: m } = await survivor.expect('PARTITION_MAP', () => true, Math.max(1, deadline - Date.now()));
    assert.ok(m.version > before, 'a pushed map only grows');
    if (m.partitions.every((p) => p.ownerNodeId !== victim)) {
      assert.notEqual(m.nodes.find((n) => n.nodeId === victim)?.status, 'ACTIVE', 'the dead node is not ACTIVE');
      assert.ok(await client.apply(m));
      break;
    }
  }
  assert.ok(!client.conns.has(victim), 'the dead node was dropped from the pool');
  // The failover's first map is not always the last: restoring backups
  // commits more table versions, and owners may move between the
  // survivors. A routing client follows every pushed map, so take them
  // until none came for 2 s.
  for (;;) {
    const next = await survivor.expect('PARTITION_MAP', () => true, 2_000).catch(() => null);
    if (!next) break;
    assert.ok(next.payload.partitions.every((p) => p.ownerNodeId !== victim), 'the dead node owns nothing again');
    await client.apply(next.payload);
  }

  const again = await client.write(keys, { v: 2 }, 'APPLIED');
  assert.ok(!again.has(victim));
  for (const [owner, ack] of again) {
    assert.ok(ack.results.every((r) => r.success), `${owner}: ${JSON.stringify(ack.results.find((r) => !r.success))}`);
  }
  for (const id of ['r1', 'r2']) assert.equal(await forwarded(nodes[id]), 0, `${id} forwarded nothing after failover`);
  client.close();
});
