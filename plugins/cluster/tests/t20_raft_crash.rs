//! Raft state survives kill -9: the test binary re-executes itself as a
//! single-node Raft that issues fencing tokens as fast as it can and prints
//! each acknowledged one, SIGKILLs it at different moments, and checks that
//! after reopening the directory the next token exceeds every token any
//! killed process had acknowledged.
//!
//! The ignored test `child_fence_writer` is the child's entry point, not a
//! test of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hangar_cluster::raft::{ClusterRaft, Command, CommandResponse, NodeAddr, RaftRpc, RaftTiming};

const DIR_ENV: &str = "HANGAR_RAFT_CRASH_DIR";
const PREFIX: &str = "ACKED ";

/// A single node never sends RPCs.
struct NoPeers;

impl RaftRpc for NoPeers {
    fn call(
        &self,
        cluster_addr: &str,
        _body: bytes::Bytes,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<bytes::Bytes, String>> {
        let e = format!("{cluster_addr}: a single-node test has no peers");
        Box::pin(async move { Err(e) })
    }
}

fn me() -> NodeAddr {
    NodeAddr {
        node_id: "solo".into(),
        cluster_addr: "127.0.0.1:7300".into(),
        client_endpoint: "127.0.0.1:8300".into(),
        zone: "z".into(),
    }
}

async fn open(dir: &Path) -> Arc<ClusterRaft> {
    let timing = RaftTiming {
        heartbeat_ms: 50,
        election_min_ms: 200,
        election_max_ms: 400,
        snapshot_every: 20,
    };
    let n = ClusterRaft::open(dir, me(), Arc::new(NoPeers), timing)
        .await
        .expect("open");
    if !n.is_initialized() {
        n.initialize(vec![me()]).await.expect("initialize");
    }
    n
}

async fn fence(n: &ClusterRaft) -> u64 {
    match n
        .propose(Command::NextFence {
            name: "crash".into(),
        })
        .await
    {
        Ok(CommandResponse::Fence(t)) => t,
        other => panic!("NextFence: {other:?}"),
    }
}

#[test]
#[ignore = "child process entry point of t45"]
fn child_fence_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let n = open(Path::new(&dir)).await;
        loop {
            let t = fence(&n).await;
            // println! flushes at the newline only on a terminal: write through.
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{PREFIX}{t}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Runs the child until it acknowledged `min_acks` tokens and `run_for` has
/// passed, SIGKILLs it, and returns the largest token it acknowledged.
fn run_and_kill(dir: &Path, min_acks: usize, run_for: Duration) -> u64 {
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_fence_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut acks = 0;
    let mut max = 0;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(t) = line.strip_prefix(PREFIX) {
            max = max.max(t.trim().parse::<u64>().unwrap());
            acks += 1;
        }
        if acks >= min_acks && started.elapsed() >= run_for {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the child acknowledged only {acks} tokens in 8 s"
        );
    }
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t45_kill9_never_loses_an_acknowledged_fence() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0;
    // Kill at different points: right after start, and mid-stream (past
    // several snapshots, as snapshot_every is 20).
    for (min_acks, ms) in [(1, 0), (30, 150), (60, 300)] {
        let d = dir.path().to_path_buf();
        let max = tokio::task::spawn_blocking(move || {
            run_and_kill(&d, min_acks, Duration::from_millis(ms))
        })
        .await
        .unwrap();
        assert!(max > acked, "round acknowledged {max}, after {acked}");
        eprintln!("killed after token {max}");
        acked = max;
    }
    let n = open(dir.path()).await;
    let next = fence(&n).await;
    assert!(
        next > acked,
        "token {next} after a crash; {acked} was acknowledged"
    );
    eprintln!("next token after the crashes: {next}");
    n.shutdown().await;
}
