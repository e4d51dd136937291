//! A minimal HTTP/1.1 GET on loopback, for tests that probe a running node's
//! `/health`, `/metrics` or `/cluster/*` endpoints.
//!
//! It exists so node tests need no HTTP client crate and every test reads
//! answers the same way: one request per connection (`Connection: close`),
//! the whole answer read until the node closes it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer: the status code and the body (everything after the headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code of the status line.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// GET `path` on `127.0.0.1:port`, waiting at most `timeout` for each read.
///
/// # Errors
///
/// The connection, the write or the read failed (no node listening, or it
/// did not answer within `timeout`), or the answer has no status line: the
/// error says which.
pub fn get(port: u16, path: &str, timeout: Duration) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "GET {path} on port {port}: expected an HTTP/1.1 status line, got {:?}",
                    resp.lines().next().unwrap_or("")
                ),
            )
        })?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_string());
    Ok(Answer { status, body })
}
