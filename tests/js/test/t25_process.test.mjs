// The process contract: --port 0 prints PORT=<n>; SIGTERM stops the node
// after acknowledging every write it made durable;
// STORAGE_BACKEND=memory (or null) keeps nothing across a restart, the
// default embedded store keeps everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, connect, putOp } from '../lib/hangar.mjs';

async function keysAfterRestart(backendEnv) {
  const dataDir = mkdtempSync(join(tmpdir(), 'hangar-js-restart-'));
  try {
    const env = { HANGAR_NO_AUTH: '1', ...backendEnv };
    const first = await startNode({ env, dataDir });
    try {
      const c = await connect(first);
      c.send({ type: 'OP_BATCH', payload: { ops: [putOp(1, 'p25', 'kept', { v: 1 })], writeConcern: 'PERSISTED' } });
      const ack = await c.expect('OP_ACK');
      assert.equal(ack.payload.results[0].success, true, JSON.stringify(ack.payload));
      await c.close();
    } finally {
      await first.stop();
    }
    const { code, signal } = await first.exited;
    assert.ok(code === 0 || signal === 'SIGTERM', `clean stop: ${code} ${signal}`);

    const second = await startNode({ env, dataDir });
    try {
      const d = await connect(second);
      d.send({ type: 'QUERY_SUB', payload: { queryId: 'all', mapName: 'p25', query: {} } });
      const resp = await d.expect('QUERY_RESP');
      assert.equal(resp.payload.error, undefined, JSON.stringify(resp.payload));
      await d.close();
      return resp.payload.results.map((r) => r.key);
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

test('t25 the default embedded store keeps acknowledged writes across a restart', async () => {
  assert.deepEqual(await keysAfterRestart({}), ['kept']);
});

for (const v of ['memory', 'null']) {
  test(`t26 STORAGE_BACKEND=${v} keeps nothing across a restart`, async () => {
    assert.deepEqual(await keysAfterRestart({ STORAGE_BACKEND: v }), []);
  });
}

test('t27 on SIGTERM every write already made durable is acknowledged before the connection closes', async () => {
  const BATCHES = 16;
  const OPS = 100;
  for (let round = 0; round < 3; round++) {
    const dataDir = mkdtempSync(join(tmpdir(), 'hangar-js-sigterm-'));
    try {
      const env = { HANGAR_NO_AUTH: '1' };
      const node = await startNode({ env, dataDir });
      let closed;
      let acked;
      try {
        const c = await connect(node);
        let b = 0;
        const sendBatch = () => {
          const ops = Array.from({ length: OPS }, (_, i) => putOp(`${b}-${i}`, 'p27', `k${b}-${i}`, 'x'.repeat(100)));
          c.send({ type: 'OP_BATCH', payload: { ops, writeConcern: 'PERSISTED', timeout: 10_000 } });
          b++;
        };
        while (b < BATCHES) sendBatch();
        // Stop the node while batches are in flight, and keep writing as a
        // busy client does: the node stops reading, so its socket holds
        // unread frames when it closes.
        const first = await c.expect('OP_ACK');
        node.proc.kill('SIGTERM');
        const writer = setInterval(() => c.isClosed || sendBatch(), 1);
        closed = await c.closed;
        clearInterval(writer);
        acked = new Set(
          [first, ...c.take('OP_ACK')].map((a) => {
            assert.ok(a.payload.results.every((r) => r.success), JSON.stringify(a.payload));
            return Number(a.payload.lastId.split('-')[0]);
          }),
        );
        await node.exited;
      } finally {
        await node.stop();
      }
      assert.equal(closed.code, 1001, `round ${round}: closed with ${closed.code}, not the shutdown close`);

      const again = await startNode({ env, dataDir });
      try {
        const d = await connect(again);
        d.send({ type: 'QUERY_SUB', payload: { queryId: 'all', mapName: 'p27', query: {} } });
        const resp = await d.expect('QUERY_RESP');
        await d.close();
        const perBatch = new Map();
        for (const r of resp.payload.results) {
          const b = Number(r.key.slice(1).split('-')[0]);
          perBatch.set(b, (perBatch.get(b) ?? 0) + 1);
        }
        const durable = [...perBatch.keys()].sort((x, y) => x - y);
        for (const b of durable) assert.equal(perBatch.get(b), OPS, `batch ${b} is whole`);
        const missing = durable.filter((b) => !acked.has(b));
        assert.deepEqual(missing, [], `round ${round}: durable batches ${durable} but acked only ${[...acked]}`);
        for (const b of acked) assert.ok(perBatch.has(b), `acked batch ${b} is durable`);
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
});
