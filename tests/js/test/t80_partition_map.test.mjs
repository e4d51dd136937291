// PARTITION_MAP_REQUEST → PARTITION_MAP (271 partitions, nodes with their
// real endpoint), only when the client's version is older.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { memoryNode, connect, startCluster, waitForCompleteMap } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

test('t80 a client without a map gets all 271 partitions and this node\'s ws URL', async () => {
  const c = await connect(node);
  c.send({ type: 'PARTITION_MAP_REQUEST', payload: {} });
  const { payload: m } = await c.expect('PARTITION_MAP');
  assert.equal(m.partitionCount, 271);
  assert.equal(m.partitions.length, 271);
  assert.deepEqual(m.partitions.map((p) => p.partitionId), Array.from({ length: 271 }, (_, i) => i));
  assert.ok(m.partitions.every((p) => p.ownerNodeId === 'node-1' && Array.isArray(p.backupNodeIds)));
  assert.equal(m.nodes.length, 1);
  assert.equal(m.nodes[0].nodeId, 'node-1');
  assert.equal(m.nodes[0].status, 'ACTIVE');
  assert.equal(m.nodes[0].endpoints.websocket, `ws://127.0.0.1:${node.port}/ws`);
  assert.ok(m.version >= 1);
  assert.ok(Math.abs(m.generatedAt - Date.now()) < 60_000);
  await c.close();
});

test('t81 the map is sent only when the client\'s version is older', async () => {
  const c = await connect(node);
  c.send({ type: 'PARTITION_MAP_REQUEST', payload: {} });
  const { payload: m } = await c.expect('PARTITION_MAP');
  c.send({ type: 'PARTITION_MAP_REQUEST', payload: { currentVersion: m.version } });
  await c.barrier();
  assert.equal(c.pending('PARTITION_MAP').length, 0, 'current version: no answer');
  c.send({ type: 'PARTITION_MAP_REQUEST', payload: { currentVersion: m.version - 1 } });
  const again = await c.expect('PARTITION_MAP');
  assert.equal(again.payload.version, m.version);
  await c.close();
});

test('t82 with [cluster] replication_enabled = false no partition has a backup (a default cluster has one)', async () => {
  for (const [config, backups] of [['', 1], ['[cluster]\nreplication_enabled = false\n', 0]]) {
    const nodes = await startCluster(['r1', 'r2'], `t82-${backups}-${process.pid}`, {
      env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
      config,
    });
    try {
      const c = await connect(nodes[0]);
      await waitForCompleteMap(c, 2);
      c.send({ type: 'PARTITION_MAP_REQUEST', payload: {} });
      const { payload: m } = await c.expect('PARTITION_MAP');
      const counts = new Set(m.partitions.map((p) => p.backupNodeIds.length));
      assert.deepEqual([...counts], [backups], `${JSON.stringify(config)}: ${[...counts]}`);
      await c.close();
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  }
});
