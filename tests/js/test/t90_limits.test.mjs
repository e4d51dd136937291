// Hostile input: the 2 MiB frame cap, nesting deeper than 256, BATCH item
// cap (ERROR 413), the per-connection rate limit (ERROR 429, a BATCH
// charged per item, frames that cannot be served included), slow
// consumers, and garbage floods. After each, the node still answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, connect, pack, putOp } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await startNode({
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
    config: '[network]\nrate_limit_per_sec = 50.0\nrate_limit_burst = 100.0\noutbound_queue = 8\n',
  });
});
after(async () => {
  await node?.stop();
});

const MiB = 1024 * 1024;

async function stillAnswers() {
  const c = await connect(node);
  await c.barrier();
  await c.close();
  const h = await fetch(`${node.http}/health`);
  assert.equal(h.status, 200);
}

function batch(items) {
  const parts = [];
  for (const it of items) {
    const body = pack(it);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    parts.push(len, body);
  }
  return { type: 'BATCH', count: items.length, data: Buffer.concat(parts) };
}

function nested(depth) {
  let v = 'leaf';
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

test('t90 a frame over 2 MiB closes that connection; the node still answers', async () => {
  const c = await connect(node);
  c.send(Buffer.alloc(2 * MiB + 1, 0x90));
  const closed = await c.closed;
  assert.equal(closed.code, 1009, 'message too big');
  await stillAnswers();
});

test('t91 a frame just under 2 MiB is accepted', async () => {
  const p = await connect(node);
  const s = await connect(node);
  s.send({ type: 'TOPIC_SUB', payload: { topic: 'big' } });
  await s.barrier();
  const data = Buffer.alloc(2 * MiB - 200, 7);
  p.send({ type: 'TOPIC_PUB', payload: { topic: 'big', data } });
  const m = await s.expect('TOPIC_MESSAGE');
  assert.equal(m.payload.data.length, data.length);
  await p.close();
  await s.close();
});

test('t92 nesting deeper than 256 is refused before decoding; shallower nesting is fine', async () => {
  const c = await connect(node);
  // Between 256 and 1024: only the node's own pre-scan can refuse this.
  c.send({ type: 'OP_BATCH', payload: { ops: [putOp(1, 'deep', 'k', nested(300))] } });
  await c.barrier();
  assert.equal(c.pending('OP_ACK').length, 0, 'the deep frame was dropped');
  c.send({ type: 'OP_BATCH', payload: { ops: [putOp(2, 'deep', 'k', nested(200))] } });
  const ack = await c.expect('OP_ACK');
  assert.equal(ack.payload.results[0].success, true);
  await c.close();
  await stillAnswers();
});

test('t93 a BATCH of more than 8192 items gets ERROR 413; 8192 items are unpacked', async () => {
  const c = await connect(node);
  const unsub = { type: 'TOPIC_UNSUB', payload: { topic: 'none' } };
  c.send(batch(Array.from({ length: 8193 }, () => unsub)));
  const err = await c.expect('ERROR');
  assert.equal(err.payload.code, 413);
  await c.barrier();
  await c.close();
  // The rate limit (burst 100) would refuse 8192 items: use a node with the default limit.
  const roomy = await startNode({ env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' } });
  try {
    const d = await connect(roomy);
    const items = Array.from({ length: 8191 }, () => unsub);
    items.push({ type: 'PING', timestamp: 8192 });
    d.send(batch(items));
    const pong = await d.expect('PONG', (m) => m.timestamp === 8192);
    assert.equal(pong.timestamp, 8192);
    assert.equal(d.pending('ERROR').length, 0);
    await d.close();
  } finally {
    await roomy.stop();
  }
});

test('t94 the per-connection rate limit charges real item counts and answers ERROR 429', async () => {
  const c = await connect(node);
  const ops = Array.from({ length: 150 }, (_, i) => putOp(i + 1, 'rl', `k${i}`, i));
  c.send({ type: 'OP_BATCH', payload: { ops } }); // 150 items > burst 100
  const err = await c.expect('ERROR');
  assert.equal(err.payload.code, 429);
  await c.barrier();
  assert.equal(c.pending('OP_ACK').length, 0, 'the refused batch was not applied');
  // The refused batch cost nothing: a small one still fits.
  c.send({ type: 'OP_BATCH', payload: { ops: ops.slice(0, 10) } });
  const ack = await c.expect('OP_ACK');
  assert.equal(ack.payload.results.length, 10);
  // A BATCH envelope is charged by its real items, not its claimed count.
  const env = batch(Array.from({ length: 120 }, (_, i) => ({ type: 'PING', timestamp: i })));
  env.count = 1;
  c.send(env);
  const err2 = await c.expect('ERROR');
  assert.equal(err2.payload.code, 429);
  await c.close();
  await stillAnswers();
});

test('t94b a BATCH of N messages costs the rate limit what N single frames cost, unknown and malformed ones included', async () => {
  // A slow refill (1 token per 2 s) so that the bucket's level is exact.
  const slow = await startNode({
    env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory' },
    config: '[network]\nrate_limit_per_sec = 0.5\nrate_limit_burst = 100.0\n',
  });
  const probe = async (c, ts) => {
    c.send({ type: 'PING', timestamp: ts });
    const m = await c.expect(['PONG', 'ERROR'], (x) => x.type === 'PONG' ? x.timestamp === ts : x.payload.code === 429);
    return m.type === 'PONG' ? 'PONG' : 429;
  };
  const unknownItem = { type: 'NO_SUCH_TYPE', payload: {} };
  const malformedItem = { type: 'PING' }; // no timestamp
  try {
    // 99 single frames that cannot be served, then a PING: all 100 tokens used.
    const singles = await connect(slow);
    for (let i = 0; i < 66; i++) singles.send(unknownItem);
    for (let i = 0; i < 33; i++) singles.send(malformedItem);
    assert.equal(await probe(singles, 1), 'PONG');
    assert.equal(await probe(singles, 2), 429, 'the bucket is empty after 100 single frames');
    await singles.close();

    // The same 99 items in one BATCH envelope cost the same.
    const enveloped = await connect(slow);
    enveloped.send(batch([...Array(66).fill(unknownItem), ...Array(33).fill(malformedItem)]));
    assert.equal(await probe(enveloped, 1), 'PONG');
    assert.equal(await probe(enveloped, 2), 429, 'the bucket is empty after a BATCH of 99 items and one PING');
    const errors = enveloped.take('ERROR').map((e) => e.payload);
    assert.equal(errors.filter((e) => e.code === 400).length, 99, 'each item was answered');
    assert.match(errors[0].message, /unknown message type "NO_SUCH_TYPE" \(BATCH item 0\)/);
    await enveloped.close();

    // An envelope larger than the bucket is refused whole: no item is answered.
    const big = await connect(slow);
    big.send(batch(Array(101).fill(unknownItem)));
    const err = await big.expect('ERROR');
    assert.equal(err.payload.code, 429, JSON.stringify(err.payload));
    assert.match(err.payload.message, /101 items refused/);
    assert.equal(await probe(big, 3), 'PONG', 'the refused envelope cost nothing');
    assert.equal(big.pending('ERROR').length, 0);
    await big.close();
  } finally {
    await slow.stop();
  }
});

test('t95 a subscriber that stops reading is disconnected without slowing the others', async () => {
  const p = await connect(node);
  const fast = await connect(node);
  const slow = await connect(node);
  for (const c of [fast, slow]) {
    c.send({ type: 'TOPIC_SUB', payload: { topic: 'firehose' } });
    await c.barrier();
  }
  slow.ws._socket.pause(); // reads nothing from now on
  const chunk = Buffer.alloc(512 * 1024, 1);
  const N = 40; // 20 MiB: more than the socket buffers and the 8-frame queue hold
  for (let i = 0; i < N; i++) {
    p.send({ type: 'TOPIC_PUB', payload: { topic: 'firehose', data: chunk } });
    // Each publish is paced by the fast subscriber, which must keep up.
    await fast.expect('TOPIC_MESSAGE');
    fast.take('TOPIC_MESSAGE');
  }
  const metrics = await (await fetch(`${node.http}/metrics`)).text();
  const m = metrics.match(/^hangar_ws_slow_consumer_disconnects_total (\d+)/m);
  assert.ok(m && Number(m[1]) >= 1, `the slow subscriber was disconnected:\n${metrics}`);
  slow.ws._socket.resume();
  await slow.closed;
  await p.close();
  await fast.close();
  await stillAnswers();
});

test('t96 a flood of garbage from one client neither crashes the node nor starves another', async () => {
  const bad = await connect(node);
  const good = await connect(node);
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const frames = [];
  for (let i = 0; i < 400; i++) {
    const len = rnd() % 300;
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = rnd() & 0xff;
    frames.push(b);
  }
  frames.push(Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff])); // a map claiming 4 billion entries
  frames.push(Buffer.from([0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61])); // a string claiming 2 GiB
  frames.push(Buffer.concat([Buffer.alloc(2000, 0x91), Buffer.from([0xc0])])); // 2000 nested arrays
  frames.push(pack(batch([{ type: 'BATCH', count: 0, data: Buffer.alloc(0) }]))); // nested BATCH
  // Every garbage frame costs the bad connection's rate limit (it soon gets
  // ERROR 429 instead of answers), so it is not paced by a barrier of its own.
  for (let round = 0; round < 5 && !bad.isClosed; round++) {
    for (const f of frames) bad.send(f);
  }
  for (let i = 0; i < 20; i++) await good.barrier();
  await good.close();
  await bad.close();
  await stillAnswers();
});
