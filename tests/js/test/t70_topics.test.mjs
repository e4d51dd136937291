// Pub/sub: TOPIC_SUB / TOPIC_UNSUB / TOPIC_PUB → TOPIC_MESSAGE to the other
// subscribers, in publish order, never to the publisher.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { memoryNode, connect } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

test('t70 a publish reaches every other subscriber with its data, not the publisher', async () => {
  const [p, s1, s2, outsider] = await Promise.all([1, 2, 3, 4].map(() => connect(node)));
  for (const c of [p, s1, s2]) {
    c.send({ type: 'TOPIC_SUB', payload: { topic: 'chat/room-1' } });
    await c.barrier();
  }
  p.send({ type: 'TOPIC_PUB', payload: { topic: 'chat/room-1', data: { text: 'hi', n: [1, 2] } } });
  for (const s of [s1, s2]) {
    const m = await s.expect('TOPIC_MESSAGE');
    assert.equal(m.payload.topic, 'chat/room-1');
    assert.deepEqual(m.payload.data, { text: 'hi', n: [1, 2] });
    assert.ok(Math.abs(m.payload.timestamp - Date.now()) < 60_000);
    assert.equal(typeof m.payload.publisherId, 'string');
  }
  await p.barrier();
  await outsider.barrier();
  assert.equal(p.pending('TOPIC_MESSAGE').length, 0, 'no echo to the publisher');
  assert.equal(outsider.pending('TOPIC_MESSAGE').length, 0, 'no message without a subscription');
  await Promise.all([p, s1, s2, outsider].map((c) => c.close()));
});

test('t71 every subscriber sees the publishes of two publishers in one and the same order', async () => {
  const [p1, p2, s1, s2] = await Promise.all([1, 2, 3, 4].map(() => connect(node)));
  for (const c of [s1, s2]) {
    c.send({ type: 'TOPIC_SUB', payload: { topic: 'order' } });
    await c.barrier();
  }
  const N = 200;
  for (let i = 0; i < N; i++) {
    p1.send({ type: 'TOPIC_PUB', payload: { topic: 'order', data: `p1-${i}` } });
    p2.send({ type: 'TOPIC_PUB', payload: { topic: 'order', data: `p2-${i}` } });
  }
  const seen = [];
  for (const s of [s1, s2]) {
    const got = [];
    for (let i = 0; i < 2 * N; i++) got.push((await s.expect('TOPIC_MESSAGE')).payload.data);
    seen.push(got);
  }
  assert.deepEqual(seen[0], seen[1], 'both subscribers saw one order');
  for (const p of ['p1', 'p2']) {
    const mine = seen[0].filter((d) => d.startsWith(p));
    assert.deepEqual(mine, Array.from({ length: N }, (_, i) => `${p}-${i}`), `${p} in publish order`);
  }
  await Promise.all([p1, p2, s1, s2].map((c) => c.close()));
});

test('t72 after TOPIC_UNSUB (or a disconnect) nothing more arrives', async () => {
  const [p, s] = await Promise.all([1, 2].map(() => connect(node)));
  s.send({ type: 'TOPIC_SUB', payload: { topic: 'bye' } });
  await s.barrier();
  p.send({ type: 'TOPIC_PUB', payload: { topic: 'bye', data: 1 } });
  await s.expect('TOPIC_MESSAGE');
  s.send({ type: 'TOPIC_UNSUB', payload: { topic: 'bye' } });
  await s.barrier();
  p.send({ type: 'TOPIC_PUB', payload: { topic: 'bye', data: 2 } });
  await p.barrier();
  await s.barrier();
  assert.equal(s.pending('TOPIC_MESSAGE').length, 0);
  // A disconnected subscriber is dropped: publishing to it does no harm.
  const gone = await connect(node);
  gone.send({ type: 'TOPIC_SUB', payload: { topic: 'bye' } });
  await gone.barrier();
  await gone.close();
  p.send({ type: 'TOPIC_PUB', payload: { topic: 'bye', data: 3 } });
  await p.barrier();
  await Promise.all([p, s].map((c) => c.close()));
});
