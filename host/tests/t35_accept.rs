//! The accept loop when the process runs out of file descriptors, and the
//! open-file limit the binary raises at start.
//!
//! Both tests change the process's `RLIMIT_NOFILE`, so they live in their
//! own test binary and run one at a time.

use std::time::Duration;

use hangar_host::server::raise_fd_limit;
use hangar_host::{HangarConfig, Modules};
use tokio::net::TcpSocket;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the owned `lim`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

fn set_soft(soft: u64) {
    let (_, hard) = nofile();
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the owned `lim`.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

fn open_fds() -> u64 {
    // The directory handle itself is closed again before this returns.
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1
}

#[tokio::test]
async fn t10_the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let _serial = SERIAL.lock().await;
    let (soft, hard) = nofile();
    let low = hard.min(256);
    set_soft(low);
    let l = raise_fd_limit().expect("raises");
    assert_eq!((l.before, l.after, l.hard), (low, hard, hard));
    assert_eq!(nofile().0, hard);
    set_soft(soft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_accept_failing_with_emfile_never_stops_the_listener() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = HangarConfig {
        port: 0,
        data_dir: dir.path().to_path_buf(),
        ..HangarConfig::default()
    };
    c.storage.set("backend", "memory");
    c.finish().unwrap();
    let r = hangar_host::start(
        c,
        Modules::embedded(hangar_storage::create, hangar_cluster::create),
    )
    .await
    .expect("node starts");
    let addr = r.addr;
    // Client sockets get their descriptors now; then not one is left, so
    // the node's accept() fails with EMFILE for each of their connections.
    let sockets: Vec<TcpSocket> = (0..3).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let (soft, _) = nofile();
    set_soft(open_fds());
    let mut streams = Vec::new();
    for s in sockets {
        streams.push(
            s.connect(addr)
                .await
                .expect("the kernel completes the handshake"),
        );
    }
    let errors = async {
        loop {
            if r.node
                .metrics
                .render()
                .contains("hangar_accept_errors_total")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let seen = tokio::time::timeout(Duration::from_secs(10), errors).await;
    set_soft(soft);
    seen.expect("accept failed with EMFILE and was counted");

    // With descriptors free again, the connections waiting in the backlog
    // are served, and so is a new one.
    for tcp in streams {
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp),
        )
        .await
        .expect("served within 10 s")
        .expect("upgraded");
        ws.close(None).await.unwrap();
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("a new client connects");
    ws.close(None).await.unwrap();
    r.shutdown().await;
}
