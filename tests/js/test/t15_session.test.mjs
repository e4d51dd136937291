// Session details a real TopGun client relies on: DEVICE_HELLO answered
// with DEVICE_ACK, CLIENT_APPLY_ACK accepted silently, a token-bearing AUTH
// acknowledged on a node without auth, REMOVE events that carry the
// tombstone a client merges, an ERROR naming any type the node does not
// handle, "not supported" answers for entry processors and conflict
// resolvers, and the WebSocket served at `/` as well as `/ws`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { memoryNode, connect, putOp, ts, pack, f64, str, map } from '../lib/hangar.mjs';

let node;
before(async () => {
  node = await memoryNode();
});
after(async () => {
  await node?.stop();
});

test('t15a DEVICE_HELLO, with or without a device token, is answered with DEVICE_ACK', async () => {
  const c = await connect(node);
  c.send({ type: 'DEVICE_HELLO' });
  const ack = await c.expect('DEVICE_ACK');
  assert.equal(ack.type, 'DEVICE_ACK');
  c.send({ type: 'DEVICE_HELLO', deviceToken: '3f2b7c1e-0000-4000-8000-000000000000.abcd' });
  await c.expect('DEVICE_ACK');
  await c.barrier();
  assert.equal(c.pending('ERROR').length, 0, JSON.stringify(c.pending('ERROR')));
  await c.close();
});

test('t15b CLIENT_APPLY_ACK (cursor as int or float64) is accepted without an answer', async () => {
  const c = await connect(node);
  c.send({ type: 'CLIENT_APPLY_ACK', cursor: 3 });
  // The client packs large integers as float64.
  c.send(map([[str('type'), str('CLIENT_APPLY_ACK')], [str('cursor'), f64(2 ** 40)]]));
  await c.barrier();
  assert.deepEqual(c.queue, [], 'nothing but the PONG was answered');
  await c.close();
});

test('t15c a token-bearing AUTH on a node without auth gets AUTH_ACK; the session goes on', async () => {
  const c = await connect(node);
  c.send({ type: 'AUTH', token: 'header.payload.signature' });
  const ack = await c.expect('AUTH_ACK');
  assert.equal(ack.type, 'AUTH_ACK');
  c.send({ type: 'CLIENT_OP', payload: putOp(1, 's15c', 'k', 1) });
  const opAck = await c.expect('OP_ACK');
  assert.equal(opAck.payload.results[0].success, true);
  await c.close();
});

test('t15d a REMOVE event carries the tombstone record (value null, the delete\'s timestamp) a client merges', async () => {
  const writer = await connect(node);
  const watcher = await connect(node);
  watcher.send({ type: 'QUERY_SUB', payload: { queryId: 'w', mapName: 's15d', query: {} } });
  await watcher.expect('QUERY_RESP');
  writer.send({ type: 'CLIENT_OP', payload: putOp(1, 's15d', 'k', 'v') });
  await writer.expect('OP_ACK');
  await watcher.expect('SERVER_EVENT', (m) => m.payload.eventType === 'PUT');
  // As the client sends a remove: a tombstone record with its own timestamp.
  const del = ts();
  writer.send({ type: 'CLIENT_OP', payload: { id: '2', mapName: 's15d', key: 'k', opType: 'REMOVE', record: { value: null, timestamp: del } } });
  await writer.expect('OP_ACK');
  const ev = await watcher.expect('SERVER_EVENT', (m) => m.payload.eventType === 'REMOVE');
  assert.equal(ev.payload.mapName, 's15d');
  assert.equal(ev.payload.key, 'k');
  assert.ok(ev.payload.record, 'the REMOVE carries a record');
  assert.equal(ev.payload.record.value, null);
  assert.deepEqual(ev.payload.record.timestamp, del, 'the delete\'s own timestamp, so the client\'s LWW merge takes it');
  // And a remove without a record: the server stamps the tombstone.
  writer.send({ type: 'CLIENT_OP', payload: putOp(3, 's15d', 'k2', 'v') });
  await writer.expect('OP_ACK');
  writer.send({ type: 'CLIENT_OP', payload: { id: '4', mapName: 's15d', key: 'k2', record: null } });
  await writer.expect('OP_ACK', (m) => m.payload.lastId === '4');
  const ev2 = await watcher.expect('SERVER_EVENT', (m) => m.payload.eventType === 'REMOVE' && m.payload.key === 'k2');
  assert.equal(ev2.payload.record.value, null);
  assert.equal(typeof ev2.payload.record.timestamp.millis, 'number');
  await writer.close();
  await watcher.close();
});

test('t15d2 QUERY_SYNC_INIT (sent by the client for projected queries) is accepted without an answer', async () => {
  const c = await connect(node);
  c.send({ type: 'QUERY_SYNC_INIT', payload: { queryId: 'q', rootHash: 12345 } });
  await c.barrier();
  assert.deepEqual(c.queue, [], 'no ERROR, no answer');
  await c.close();
});

test('t15e an unknown type, and a server-to-client type, get an ERROR naming the type; the connection stays open', async () => {
  const c = await connect(node);
  c.send({ type: 'HYBRID_QUERY_SUBSCRIBE', payload: { subscriptionId: 's' } });
  const e1 = await c.expect('ERROR');
  assert.equal(e1.payload.code, 400);
  assert.match(e1.payload.message, /unknown message type "HYBRID_QUERY_SUBSCRIBE"/);
  c.send({ type: 'OP_ACK', payload: { lastId: '1' } });
  const e2 = await c.expect('ERROR');
  assert.match(e2.payload.message, /OP_ACK is sent by the server/);
  c.send({ type: 'X'.repeat(500) });
  const e3 = await c.expect('ERROR');
  assert.ok(e3.payload.message.length < 300, 'a long type name is quoted cut short');
  const pong = await c.barrier();
  assert.equal(pong.type, 'PONG');
  await c.close();
});

test('t15f entry processors and conflict resolvers are answered "not supported" with their own response types', async () => {
  const c = await connect(node);
  const processor = { name: 'inc', code: 'return { value: (value || 0) + 1 }' };
  c.send({ type: 'ENTRY_PROCESS', requestId: 'e1', mapName: 'm', key: 'k', processor });
  const r1 = await c.expect('ENTRY_PROCESS_RESPONSE');
  assert.deepEqual({ id: r1.requestId, success: r1.success }, { id: 'e1', success: false });
  assert.match(r1.error, /entry processors are not supported/);

  c.send({ type: 'ENTRY_PROCESS_BATCH', requestId: 'e2', mapName: 'm', keys: ['a', 'b'], processor });
  const r2 = await c.expect('ENTRY_PROCESS_BATCH_RESPONSE');
  assert.equal(r2.requestId, 'e2');
  assert.deepEqual(Object.keys(r2.results).sort(), ['a', 'b']);
  for (const r of Object.values(r2.results)) {
    assert.equal(r.success, false);
    assert.match(r.error, /not supported/);
  }

  const resolver = { name: 'mine', code: 'return { action: "local" }', priority: 50 };
  c.send({ type: 'REGISTER_RESOLVER', requestId: 'r1', mapName: 'm', resolver });
  const r3 = await c.expect('REGISTER_RESOLVER_RESPONSE');
  assert.deepEqual({ id: r3.requestId, success: r3.success }, { id: 'r1', success: false });
  assert.match(r3.error, /conflict resolvers are not supported/);

  c.send({ type: 'UNREGISTER_RESOLVER', requestId: 'r2', mapName: 'm', resolverName: 'mine' });
  const r4 = await c.expect('UNREGISTER_RESOLVER_RESPONSE');
  assert.deepEqual({ id: r4.requestId, success: r4.success }, { id: 'r2', success: false });
  assert.match(r4.error, /not supported/);

  c.send({ type: 'LIST_RESOLVERS', requestId: 'r3' });
  const r5 = await c.expect('LIST_RESOLVERS_RESPONSE');
  assert.deepEqual({ id: r5.requestId, resolvers: r5.resolvers }, { id: 'r3', resolvers: [] });

  await c.barrier();
  assert.equal(c.pending('ERROR').length, 0);
  await c.close();
});

test('t15g the WebSocket is served at / as well as /ws', async () => {
  const c = await connect(node, { url: `ws://127.0.0.1:${node.port}/` });
  c.send({ type: 'PING', timestamp: 42 });
  const pong = await c.expect('PONG');
  assert.equal(pong.timestamp, 42);
  c.send({ type: 'CLIENT_OP', payload: putOp(1, 's15g', 'k', 1) });
  assert.equal((await c.expect('OP_ACK')).payload.results[0].success, true);
  await c.close();
  const plain = await fetch(`${node.http}/`);
  assert.notEqual(plain.status, 200, 'a plain GET / is not a WebSocket upgrade');
});
