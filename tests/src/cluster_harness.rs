//! Multi-process cluster harness: `hangar` processes on loopback, on ports
//! picked free, sharing one data directory (state is kept per node id);
//! start them together or one by one, `kill -9` them, stop them with
//! SIGTERM, restart them on the same ports, read their `/health`, and talk
//! to them as a TopGun client over WebSocket ([`Client`]).
//!
//! Every wait is bounded: a test that waits on a cluster that never forms
//! fails with the nodes' health and the tail of their logs.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hangar_host::protocol::messages::{ClientOp, OpAck, OpBatch, QuerySub, WireLwwRecord};
use hangar_host::protocol::{decode_frame, Decoded, Message, RawMsgpack};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::support::target_dir;

pub use hangar_testkit::support::free_port;

/// One node of the harness.
#[derive(Debug)]
pub struct NodeProc {
    /// Node id.
    pub id: String,
    /// Client (WebSocket, HTTP) port.
    pub port: u16,
    /// Cluster transport port.
    pub cluster_port: u16,
    child: Option<Child>,
    log: PathBuf,
    /// Extra environment for this node's process (e.g. `HANGAR_ZONE`).
    env: Vec<(String, String)>,
}

/// A set of `hangar` processes forming (or not) a cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, by index.
    pub nodes: Vec<NodeProc>,
    /// Data directory shared by all nodes.
    pub dir: PathBuf,
    config: PathBuf,
    cluster_id: String,
    /// The `hangar` binary the nodes run (`None`: this profile's).
    binary: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

/// Settings every node of a harness gets (`[cluster]` in its TOML file).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cluster id.
    pub cluster_id: String,
    /// Extra `[cluster]` lines.
    pub cluster_toml: String,
    /// Extra top-level lines (before any table).
    pub top_toml: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_id: "test".into(),
            cluster_toml: String::new(),
            top_toml: String::new(),
        }
    }
}

impl Cluster {
    /// `n` nodes (`n1`..), not started, each seeded with every other node.
    ///
    /// # Panics
    /// If the temporary directory cannot be made.
    #[must_use]
    pub fn new(n: usize, settings: &Settings) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-cluster-test-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let nodes = (1..=n)
            .map(|i| NodeProc {
                id: format!("n{i}"),
                port: free_port(),
                cluster_port: free_port(),
                child: None,
                log: dir.join(format!("n{i}.log")),
                env: Vec::new(),
            })
            .collect();
        let config = dir.join(format!("{}.toml", settings.cluster_id));
        let mut f = File::create(&config).expect("config file");
        writeln!(
            f,
            "host = \"127.0.0.1\"\n{}\n[cluster]\nhost = \"127.0.0.1\"\ncluster_id = \"{}\"\n{}",
            settings.top_toml, settings.cluster_id, settings.cluster_toml
        )
        .expect("write config");
        Self {
            nodes,
            dir,
            config,
            cluster_id: settings.cluster_id.clone(),
            binary: None,
            _tmp: Some(tmp),
        }
    }

    /// The seed list of node `i`: every other node's cluster address.
    #[must_use]
    pub fn seeds_of(&self, i: usize) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sets `key=value` in node `i`'s environment from its next start on
    /// (per-node settings such as `HANGAR_ZONE`, where the shared config
    /// file cannot differ).
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        let env = &mut self.nodes[i].env;
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }

    /// Runs the nodes on `binary` from their next start on, instead of the
    /// `hangar` of the tests' own profile (a test of the release binary).
    pub fn use_binary(&mut self, binary: PathBuf) {
        self.binary = Some(binary);
    }

    /// Starts node `i` (again) on its ports.
    ///
    /// # Panics
    /// If the binary cannot be spawned.
    pub fn start(&mut self, i: usize) {
        let seeds = self.seeds_of(i);
        self.start_with_seeds(i, &seeds);
    }

    /// Starts node `i` (again) on its ports with `seeds` (comma-separated
    /// `host:port`, may be empty).
    ///
    /// # Panics
    /// If the binary cannot be spawned.
    pub fn start_with_seeds(&mut self, i: usize, seeds: &str) {
        let bin = self
            .binary
            .clone()
            .unwrap_or_else(|| target_dir().join("hangar"));
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "{} is already running", n.id);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("log file");
        let child = Command::new(&bin)
            .args(["--config"])
            .arg(&self.config)
            .args(["--node-id", &n.id])
            .args(["--port", &n.port.to_string()])
            .args(["--cluster-port", &n.cluster_port.to_string()])
            .args(["--seed-nodes", seeds])
            .arg("--data-dir")
            .arg(&self.dir)
            .env_remove("JWT_SECRET")
            .env_remove("HANGAR_PORT")
            .env("HANGAR_NO_AUTH", "1")
            .env("HANGAR_LOG", "info,openraft=warn,chitchat=warn")
            .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        n.child = Some(child);
    }

    /// Starts every node at once.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` and wait (at most `wait`) for it to exit; true when
    /// it exited with status 0.
    pub fn stop(&mut self, i: usize, wait: Duration) -> bool {
        let Some(mut c) = self.nodes[i].child.take() else {
            return false;
        };
        let pid = i32::try_from(c.id()).expect("pid");
        // SAFETY: sending a signal to a child we spawned and still own.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while node `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Node `i`'s process id while it runs (to read its CPU time from
    /// `/proc`), `None` when it is not running.
    #[must_use]
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Node `i`'s `/health`, or `None` when it does not answer.
    #[must_use]
    pub fn health(&self, i: usize) -> Option<Value> {
        http_get_json(self.nodes[i].port, "/health")
    }

    /// Node `i`'s `/metrics` text.
    #[must_use]
    pub fn metrics(&self, i: usize) -> Option<String> {
        http_get(self.nodes[i].port, "/metrics")
    }

    /// WebSocket URL of node `i`.
    #[must_use]
    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://127.0.0.1:{}/ws", self.nodes[i].port)
    }

    /// Waits until every node in `which` is ready in one cluster: the same
    /// leader, the same table version, `which.len()` live members each.
    /// Returns that table version.
    ///
    /// # Errors
    /// After `timeout`, what each node reported and its log tail.
    pub fn wait_formed(&self, which: &[usize], timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let hs: Vec<Option<Value>> = which.iter().map(|&i| self.health(i)).collect();
            if let Some(v) = agreed(&hs, which.len()) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(self.report(which, &hs));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What `which` reported, with the tail of their logs.
    #[must_use]
    pub fn report(&self, which: &[usize], hs: &[Option<Value>]) -> String {
        let mut out = String::new();
        for (k, &i) in which.iter().enumerate() {
            let n = &self.nodes[i];
            out.push_str(&format!(
                "\n--- {} (port {}, cluster port {}): {}\n",
                n.id,
                n.port,
                n.cluster_port,
                hs.get(k)
                    .and_then(Clone::clone)
                    .map_or("no answer".to_string(), |h| h["cluster"].to_string())
            ));
            out.push_str(&self.log_tail(i, 25));
        }
        out
    }

    /// The last `lines` lines of node `i`'s log.
    #[must_use]
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.nodes[i].log) {
            let _ = f.read_to_string(&mut s);
        }
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// The cluster id this harness uses.
    #[must_use]
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The data directory shared by the nodes.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// The table version every node reports when all of them are ready with
/// the same leader, table version and `n` live members.
fn agreed(hs: &[Option<Value>], n: usize) -> Option<u64> {
    let mut version = None;
    let mut leader = None;
    for h in hs {
        let c = &h.as_ref()?["cluster"];
        if c["ready"] != Value::Bool(true) || c["membersAlive"].as_u64()? != n as u64 {
            return None;
        }
        let v = c["tableVersion"].as_u64()?;
        let l = c["leader"].as_str()?.to_string();
        if *version.get_or_insert(v) != v || *leader.get_or_insert_with(|| l.clone()) != l {
            return None;
        }
        let active = c["members"]
            .as_array()?
            .iter()
            .filter(|m| m["status"] == "ACTIVE")
            .count();
        if active != n {
            return None;
        }
    }
    version
}

/// GET `path` on loopback `port`; the body on HTTP 200, `None` on any other
/// status or when the node does not answer (use `hangar_testkit::http::get`
/// to see other statuses).
#[must_use]
pub fn http_get(port: u16, path: &str) -> Option<String> {
    hangar_testkit::http::get(port, path, Duration::from_secs(3))
        .ok()
        .filter(|a| a.status == 200)
        .map(|a| a.body)
}

fn http_get_json(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(port, path)?).ok()
}

/// A TopGun-protocol client of one node.
pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    /// Messages read while waiting for something else (events, pushed
    /// partition maps).
    pub other: Vec<Message>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("next", &self.next).finish()
    }
}

/// A last-write-wins put of `value` at `key`, stamped `millis` by `client`.
#[must_use]
pub fn put(id: &str, map: &str, key: &str, value: &Value, millis: u64, client: &str) -> ClientOp {
    ClientOp {
        id: Some(id.to_string()),
        map_name: map.to_string(),
        key: key.to_string(),
        op_type: None,
        record: Some(Some(WireLwwRecord {
            value: Some(RawMsgpack::from_value(
                &rmpv::ext::to_value(value).expect("json to msgpack"),
            )),
            timestamp: hangar_core::Timestamp::new(millis, 0, client),
            ttl_ms: None,
        })),
        or_record: None,
        or_tag: None,
        write_concern: None,
        timeout: None,
        consistency: None,
    }
}

impl Client {
    /// Connects to `url` (a node without auth).
    ///
    /// # Errors
    /// When the WebSocket cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, String> {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .map_err(|_| format!("{url}: connect timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
        Ok(Self {
            ws,
            next: 0,
            other: Vec::new(),
        })
    }

    /// Sends one message.
    ///
    /// # Errors
    /// When the socket is closed.
    pub async fn send(&mut self, m: &Message) -> Result<(), String> {
        let bytes = m.encode().map_err(|e| e.to_string())?;
        self.ws
            .send(Ws::Binary(bytes.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next message, within `timeout`.
    ///
    /// # Errors
    /// On timeout, close or an undecodable frame.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message, String> {
        loop {
            let f = tokio::time::timeout(timeout, self.ws.next())
                .await
                .map_err(|_| format!("no message within {timeout:?}"))?
                .ok_or("the connection closed")?
                .map_err(|e| e.to_string())?;
            if let Ws::Binary(b) = f {
                return match decode_frame(&b).map_err(|e| e.to_string())? {
                    Decoded::Message(m) => Ok(m),
                    other => Err(format!("unexpected frame {other:?}")),
                };
            }
        }
    }

    /// Waits for the first message `pick` accepts, keeping the others in
    /// [`Self::other`].
    ///
    /// # Errors
    /// On timeout or close.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Message) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv(left).await?;
            if let Some(t) = pick(&m) {
                return Ok(t);
            }
            self.other.push(m);
        }
    }

    /// Writes `ops` as one `OP_BATCH` and waits for its `OP_ACK`.
    ///
    /// # Errors
    /// On timeout or close.
    pub async fn batch(
        &mut self,
        ops: Vec<ClientOp>,
        concern: &str,
        consistency: Option<&str>,
        timeout_ms: u64,
    ) -> Result<OpAck, String> {
        let last = ops.last().and_then(|o| o.id.clone()).unwrap_or_default();
        self.send(&Message::OpBatch {
            payload: OpBatch {
                ops,
                write_concern: Some(concern.to_string()),
                timeout: Some(timeout_ms),
                consistency: consistency.map(ToString::to_string),
            },
        })
        .await?;
        self.wait_for(Duration::from_millis(timeout_ms + 10_000), |m| match m {
            Message::OpAck { payload } if payload.last_id == last => Some(payload.clone()),
            _ => None,
        })
        .await
    }

    /// A fresh op id.
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        self.next.to_string()
    }

    /// Subscribes a live query on `map` (the whole map) and returns the keys
    /// of its first page.
    ///
    /// # Errors
    /// On timeout or close.
    pub async fn subscribe(&mut self, query_id: &str, map: &str) -> Result<Vec<String>, String> {
        self.subscribe_at(query_id, map, None).await
    }

    /// [`Self::subscribe`] at read `consistency` (`EVENTUAL`, `QUORUM`,
    /// `STRONG`); `None` leaves it to the node's configuration.
    ///
    /// # Errors
    /// On timeout or close.
    pub async fn subscribe_at(
        &mut self,
        query_id: &str,
        map: &str,
        consistency: Option<&str>,
    ) -> Result<Vec<String>, String> {
        self.send(&Message::QuerySub {
            payload: QuerySub {
                query_id: query_id.to_string(),
                map_name: map.to_string(),
                query: rmpv::Value::Map(vec![]),
                fields: None,
                consistency: consistency.map(ToString::to_string),
            },
        })
        .await?;
        let q = query_id.to_string();
        self.wait_for(Duration::from_secs(10), |m| match m {
            Message::QueryResp { payload } if payload.query_id == q => {
                Some(payload.results.iter().map(|r| r.key.clone()).collect())
            }
            _ => None,
        })
        .await
    }
}

/// The 1-, 5- and 15-minute load averages as `/proc/loadavg` shows them
/// (benchmarks print them beside their figures: the machine may be shared).
#[must_use]
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The 1-minute load average alone, for a figure line.
#[must_use]
pub fn load1() -> String {
    loadavg()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// `n` nodes of cluster `id`, started together and formed.
///
/// # Panics
/// If they do not form within 60 s (with their health and log tails).
#[must_use]
pub fn formed(n: usize, id: &str) -> Cluster {
    let mut c = Cluster::new(
        n,
        &Settings {
            cluster_id: id.into(),
            ..Settings::default()
        },
    );
    c.start_all();
    let which: Vec<usize> = (0..n).collect();
    c.wait_formed(&which, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{id}: {n} nodes did not form:{e}"));
    c
}

/// Keys of `map` a live query on node `i` of `c` returns at STRONG: every
/// key of the cluster whose owner (in node `i`'s table) holds it.
///
/// # Errors
/// When the node cannot be reached or does not answer the query.
pub async fn keys_on(
    c: &Cluster,
    i: usize,
    map: &str,
) -> Result<std::collections::BTreeSet<String>, String> {
    let mut cl = Client::connect(&c.ws_url(i)).await?;
    Ok(cl
        .subscribe_at("q", map, Some("STRONG"))
        .await?
        .into_iter()
        .collect())
}

/// A key in each of the 271 partitions, by partition, distinct per
/// `prefix`.
#[must_use]
pub fn one_key_per_partition(prefix: &str) -> std::collections::BTreeMap<u32, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut i = 0u64;
    while out.len() < hangar_core::PARTITION_COUNT as usize {
        let k = format!("{prefix}-{i}");
        out.entry(hangar_core::partition_of(&k)).or_insert(k);
        i += 1;
    }
    out
}
