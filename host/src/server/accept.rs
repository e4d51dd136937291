//! The accept loop of the node's port: TCP connections served as HTTP/1.1
//! (`/health`, `/metrics`, the WebSocket upgrade at `/ws` and `/`), under the limits
//! that keep slow or hostile sockets from starving the node.
//!
//! - Every accepted connection takes a [`ConnectionSlot`] before a byte of
//!   it is read, so sockets still sending their request count against
//!   `max_connections`. Past the cap a connection gets a best-effort
//!   `HTTP 503` and is closed at once, holding no file descriptor.
//! - A request head (the WebSocket upgrade included) must be complete within
//!   `request_timeout_ms` of the moment the node starts waiting for it,
//!   kept-alive connections waiting for their next request included; hyper
//!   closes a slower connection.
//! - An `accept` error never ends the loop. An error of one connection is
//!   skipped; any other (out of file descriptors, out of memory) is logged
//!   and retried after a pause that doubles from 10 ms up to 1 s, so the
//!   node neither spins nor stops listening.
//!
//! HTTP/2 is not served: clients reach the node over HTTP/1.1 upgrades.
//!
//! The process's own open-file limit is raised by [`raise_fd_limit`], which
//! the `hangar` binary calls at start.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hangar_core::module::services::MetricsExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::state::{ConnectionSlot, FrontEnd};

/// First pause after an `accept` error that is not one connection's own.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between two failing `accept` calls.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The answer to a connection past `max_connections`.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain\r\ncontent-length: 34\r\n\r\ntoo many connections; retry later\n";

/// Errors that concern one connection only: it is gone, accept the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Accepts connections on `listener` and serves each with `app` until
/// `stop` turns true; then closes the listener, asks every connection still
/// in HTTP to finish (hyper's graceful shutdown) and returns once they did.
/// WebSocket connections are not waited for here: they hold the front end's
/// drain guard instead.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    fe: Arc<FrontEnd>,
    mut stop: watch::Receiver<bool>,
) {
    let timeout = Duration::from_millis(fe.net.request_timeout_ms);
    // Each connection task holds a receiver; the loop waits for the last.
    let (tasks, task_token) = watch::channel(());
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok((tcp, peer)) => {
                backoff = MIN_BACKOFF;
                (tcp, peer)
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted");
                continue;
            }
            Err(e) => {
                fe.node
                    .metrics
                    .counter("hangar_accept_errors_total", &[], 1.0);
                tracing::error!(
                    error = %e,
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "accepting a connection failed (out of file descriptors?); the node keeps listening"
                );
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some(slot) = fe.connection_slot() else {
            fe.node.metrics.counter(
                "hangar_ws_connections_rejected_total",
                &[("reason", "max_connections")],
                1.0,
            );
            tokio::spawn(refuse(tcp));
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            Arc::new(slot),
            timeout,
            stop.clone(),
            task_token.clone(),
        ));
    }
    drop(listener);
    drop(task_token);
    tasks.closed().await;
}

/// Answers `HTTP 503` without reading the request, within a short bound,
/// and closes.
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        tcp.write_all(REFUSAL).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Serves one HTTP/1.1 connection; `slot` travels with every request (an
/// extension) so that a WebSocket upgrade keeps the connection counted, and
/// so does the peer's address (`ConnectInfo`, which `POST /sync` charges
/// its rate limit to).
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    slot: Arc<ConnectionSlot>,
    request_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _task: watch::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(slot.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, req.map(Body::new)).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        tracing::debug!("HTTP request not complete within the request timeout; connection closed");
                    } else {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The process's open-file limit (`RLIMIT_NOFILE`) around [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// Soft limit before the call.
    pub before: u64,
    /// Soft limit after it.
    pub after: u64,
    /// Hard limit (the most the soft limit may be raised to).
    pub hard: u64,
}

/// Raises the process's soft open-file limit to its hard limit.
///
/// Every client connection holds a file descriptor; the usual soft limit of
/// 1,024 would cap the node far below `max_connections`. Only the binary
/// calls this: an embedding program owns its process limits.
///
/// # Errors
/// The `getrlimit` / `setrlimit` error; the limit is then unchanged.
#[cfg(unix)]
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, owned `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // `rlim_t` is narrower than u64 on some 32-bit targets.
    #[allow(
        clippy::useless_conversion,
        reason = "`rlim_t` is narrower than u64 on some 32-bit targets"
    )]
    let (before, hard) = (u64::from(lim.rlim_cur), u64::from(lim.rlim_max));
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the valid, owned `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(FdLimit {
        before,
        after: hard,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_connection_errors_are_told_from_resource_errors() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!is_connection_error(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_connection_error(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
    }
}
