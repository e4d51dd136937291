// Test helpers: start the `hangar` binary, talk to it over WebSocket with
// msgpackr (the encoder the TopGun client uses), sign JWTs.
//
// Every wait is bounded; no test sleeps where an event can be awaited.
// Absence is checked with a barrier instead of a timer: the node answers a
// connection's frames in order, so once the PONG of a PING sent after some
// action has arrived, anything that action would have sent to this
// connection has arrived before it.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr, Unpackr } from 'msgpackr';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');

/** Path of the binary under test: $HANGAR_BIN or target/debug/hangar. */
export const HANGAR_BIN = process.env.HANGAR_BIN
  ? resolve(process.env.HANGAR_BIN)
  : join(process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, 'target'), 'debug', 'hangar');

// As the TopGun client: plain objects, string keys, no records extension.
export const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'number' });

export const pack = (obj) => packr.pack(obj);
export const unpack = (buf) => unpackr.unpack(buf);

/**
 * Starts a node. `env` adds environment variables; `config` is TOML text
 * written to a file and passed with --config; `dataDir` (kept on stop)
 * replaces the fresh temporary one. Resolves once it printed PORT=<n>.
 * `stop()` sends SIGTERM (SIGKILL after 10 s) and removes its temporary
 * directory.
 */
export async function startNode({ env = {}, config, args = [], dataDir } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-js-'));
  const argv = ['--port', '0', '--data-dir', dataDir ?? join(dir, 'data'), ...args];
  if (config !== undefined) {
    const file = join(dir, 'hangar.toml');
    writeFileSync(file, config);
    argv.push('--config', file);
  }
  const childEnv = { ...process.env, HANGAR_LOG: process.env.HANGAR_LOG ?? 'warn', ...env };
  delete childEnv.HANGAR_PORT;
  for (const k of ['JWT_SECRET', 'HANGAR_NO_AUTH', 'TOPGUN_NO_AUTH', 'STORAGE_BACKEND']) {
    if (!(k in env)) delete childEnv[k];
  }
  const proc = spawn(HANGAR_BIN, argv, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 100_000) stderr = stderr.slice(-50_000);
  });
  const port = await new Promise((resolvePort, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`hangar did not print PORT= within 20 s; stderr:\n${stderr}`)), 20_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/^PORT=(\d+)$/m);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hangar exited (${code}) before printing PORT=; stderr:\n${stderr}`));
    });
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${HANGAR_BIN}: ${err.message}`));
    });
  });
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    proc,
    exited,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A protocol client with a queue of decoded messages. */
export class Client {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    this.isClosed = false;
    ws.on('close', () => {
      this.isClosed = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed while waiting for ${w.what}`));
    });
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return;
      const msg = unpack(data);
      const i = this.waiters.findIndex((w) => w.match(msg));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w.resolve(msg);
      } else {
        this.queue.push(msg);
      }
    });
    this.pings = 0;
  }

  /** Sends one message (an object) or raw bytes as one binary frame. */
  send(msg) {
    this.ws.send(Buffer.isBuffer(msg) || msg instanceof Uint8Array ? msg : pack(msg));
  }

  /** The next message of `type` (a name or a list of names) matching
   * `pred`, within `ms`. */
  expect(type, pred = () => true, ms = 10_000) {
    const types = Array.isArray(type) ? type : [type];
    const match = (m) => m && types.includes(m.type) && pred(m);
    const i = this.queue.findIndex(match);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    if (this.isClosed) return Promise.reject(new Error(`connection closed; no ${type}`));
    return new Promise((resolveMsg, reject) => {
      const w = { match, what: type };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ${type} within ${ms} ms; queued: ${JSON.stringify(this.queue.map((q) => q.type))}`));
      }, ms);
      w.resolve = (m) => {
        clearTimeout(timer);
        resolveMsg(m);
      };
      w.reject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      this.waiters.push(w);
    });
  }

  /** PING and wait for its PONG: everything sent before it has arrived. */
  async barrier() {
    const ts = 1_000_000 + ++this.pings;
    this.send({ type: 'PING', timestamp: ts });
    return this.expect('PONG', (m) => m.timestamp === ts);
  }

  /** Messages of `type` that arrived and were not consumed. */
  pending(type) {
    return this.queue.filter((m) => m.type === type);
  }

  /** Removes and returns queued messages of `type`. */
  take(type) {
    const out = this.queue.filter((m) => m.type === type);
    this.queue = this.queue.filter((m) => m.type !== type);
    return out;
  }

  close() {
    this.ws.close();
    return this.closed;
  }
}

/** Opens a WebSocket to the node; resolves once open. */
export async function connect(node, { url } = {}) {
  const ws = new WebSocket(url ?? node.url, { maxPayload: 64 * 1024 * 1024 });
  const c = new Client(ws);
  await new Promise((r, reject) => {
    ws.once('open', r);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  return c;
}

function b64url(b) {
  return Buffer.from(b).toString('base64url');
}

/** An HS256 JWT over `claims`, signed with `secret`. */
export function jwt(secret, claims, alg = 'HS256') {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const hash = alg === 'HS512' ? 'sha512' : 'sha256';
  const sig = createHmac(hash, secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Seconds since the epoch, plus `s`. */
export const inSeconds = (s) => Math.floor(Date.now() / 1000) + s;

let counter = 0;
/** An HLC timestamp as the client sends it (`millis` goes out as float64). */
export function ts(nodeId = 'js-client') {
  return { millis: Date.now(), counter: ++counter, nodeId };
}

/** A CLIENT_OP payload for an LWW put. */
export function putOp(id, mapName, key, value, extra = {}) {
  return { id: String(id), mapName, key, record: { value, timestamp: ts() }, ...extra };
}

/** A node that needs no auth and keeps data in memory. */
export function memoryNode(extra = {}) {
  return startNode({ ...extra, env: { HANGAR_NO_AUTH: '1', STORAGE_BACKEND: 'memory', ...(extra.env ?? {}) } });
}

/** Hand-built msgpack: a float64 (0xcb) holding `n`, for "integers sent as float64". */
export function f64(n) {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(n, 1);
  return b;
}

/** Hand-built msgpack string. */
export function str(s) {
  const body = Buffer.from(s, 'utf8');
  if (body.length > 31) throw new Error('short strings only');
  return Buffer.concat([Buffer.from([0xa0 | body.length]), body]);
}

/** Hand-built msgpack map from [keyBytes, valueBytes] pairs. */
export function map(pairs) {
  return Buffer.concat([Buffer.from([0x80 | pairs.length]), ...pairs.flat()]);
}

/** A loopback TCP port that was free a moment ago (for `--cluster-port`). */
export async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** A seeded generator (mulberry32): each seed replays the same sequence in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Starts one node per id as one cluster on loopback, each seeded with the others. */
export async function startCluster(ids, clusterId, { env = {}, config } = {}) {
  const ports = await Promise.all(ids.map(() => freePort()));
  return Promise.all(
    ids.map((id, i) =>
      startNode({
        env,
        config,
        args: [
          '--node-id', id,
          '--cluster-id', clusterId,
          '--cluster-port', String(ports[i]),
          '--seed-nodes', ports.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`).join(','),
          '--advertise-host', '127.0.0.1',
        ],
      }),
    ),
  );
}

/** Asks `c` for the partition map until all `n` nodes are ACTIVE and each owns partitions (30 s bound). */
export async function waitForCompleteMap(c, n) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    c.send({ type: 'PARTITION_MAP_REQUEST', payload: { currentVersion: 0 } });
    const { payload: m } = await c.expect('PARTITION_MAP');
    const active = m.nodes.filter((x) => x.status === 'ACTIVE').length;
    if (active === n && new Set(m.partitions.map((p) => p.ownerNodeId)).size === n) return;
    if (Date.now() >= deadline) throw new Error(`no complete ${n}-node map within 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
