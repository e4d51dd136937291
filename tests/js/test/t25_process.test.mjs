// The process contract: --port 0 prints PORT=<n>; SIGTERM stops the node;
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
