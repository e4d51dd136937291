// Transport: /health, /metrics, PING/PONG, tolerant decoding, string keys.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Unpackr } from 'msgpackr';
import { memoryNode, connect, pack, f64, str, map } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

test('t10 /health answers JSON with the node id and both modules', async () => {
  const res = await fetch(`${node.http}/health`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.status, 'ok');
  assert.equal(body.nodeId, 'node-1');
  assert.ok(body.storage.name && body.cluster.name);
});

test('t11 PING gets PONG with the echoed timestamp and the server time', async () => {
  const c = await connect(node);
  const now = Date.now(); // msgpackr sends this as float64
  c.send({ type: 'PING', timestamp: now });
  const pong = await c.expect('PONG');
  assert.equal(pong.timestamp, now);
  assert.ok(Math.abs(pong.serverTime - Date.now()) < 60_000, `serverTime ${pong.serverTime}`);
  await c.close();
});

test('t12 integers sent as float64 are accepted where an integer is expected', async () => {
  const c = await connect(node);
  // {type: "PING", timestamp: 42.0 as float64}, built by hand.
  c.send(map([[str('type'), str('PING')], [str('timestamp'), f64(42)]]));
  const pong = await c.expect('PONG');
  assert.equal(pong.timestamp, 42);
  await c.close();
});

test('t13 unknown types and malformed frames are dropped, each answered with an ERROR 400 saying what was wrong; the connection stays open', async () => {
  const c = await connect(node);
  c.send({ type: 'NO_SUCH_MESSAGE', payload: { x: 1 } }); // unknown: dropped, ERROR names the type
  c.send({ type: 'PING' }); // missing its timestamp: malformed
  c.send(Buffer.from([0xc1])); // reserved marker
  c.send(Buffer.from([0x93, 1, 2, 3])); // an array, not a map
  c.ws.send('a text frame'); // text frames are not part of the protocol
  c.send({ type: 'PING', timestamp: 7, extra: 'ignored', nested: { a: [1, 2] } }); // unknown fields
  const pong = await c.expect('PONG');
  assert.equal(pong.timestamp, 7);
  const errors = c.take('ERROR').map((e) => e.payload);
  assert.deepEqual(errors.map((e) => e.code), [400, 400, 400, 400, 400], JSON.stringify(errors));
  const [unknown, missing, reserved, array, text] = errors.map((e) => e.message);
  assert.match(unknown, /unknown message type "NO_SUCH_MESSAGE"/);
  assert.match(missing, /PING.*timestamp/);
  assert.match(reserved, /0xc1/);
  assert.match(array, /must be a msgpack map/);
  assert.match(text, /text frame/);
  assert.equal(c.queue.length, 0, `nothing else answered: ${JSON.stringify(c.queue)}`);
  await c.close();
});

test('t13b a malformed item of a BATCH gets an ERROR naming the item; the other items are served', async () => {
  const c = await connect(node);
  const items = [pack({ type: 'PING', timestamp: 1 }), pack({ type: 'PING' }), pack({ type: 'PING', timestamp: 3 })];
  const parts = items.flatMap((b) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return [len, b];
  });
  c.send({ type: 'BATCH', count: 3, data: Buffer.concat(parts) });
  await c.expect('PONG', (m) => m.timestamp === 3);
  const [err] = c.take('ERROR');
  assert.equal(err.payload.code, 400);
  assert.match(err.payload.message, /BATCH item 1: malformed PING/);
  assert.equal(c.take('PONG').length, 1, 'item 0 was answered too');
  await c.close();
});

test('t14 the server writes maps with string keys', async () => {
  const c = await connect(node);
  const raw = new Promise((r) => c.ws.once('message', (d) => r(d)));
  c.send({ type: 'PING', timestamp: 1 });
  const bytes = await raw;
  const asMaps = new Unpackr({ mapsAsObjects: false, useRecords: false }).unpack(bytes);
  assert.ok(asMaps instanceof Map, 'top level is a map');
  for (const k of asMaps.keys()) assert.equal(typeof k, 'string');
  assert.equal(asMaps.get('type'), 'PONG');
  await c.close();
});

test('t15 /metrics is Prometheus text with the front-end series', async () => {
  const c = await connect(node);
  await c.barrier();
  const res = await fetch(`${node.http}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/plain/);
  const text = await res.text();
  for (const series of [
    '# TYPE hangar_ws_connections gauge',
    'hangar_ws_connections_accepted_total',
    'hangar_ws_frames_in_total',
    'hangar_ws_frames_out_total',
    'hangar_ws_messages_total{type="PING"}',
  ]) {
    assert.ok(text.includes(series), `missing ${series} in\n${text}`);
  }
  await c.close();
});
