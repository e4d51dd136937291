//! Turning PostgreSQL and pool errors into messages an operator can act on,
//! and telling passing connection trouble (retried) from real failures.

use std::error::Error as StdError;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// `e` and every cause under it, joined by `": "`.
#[must_use]
pub fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// The database error's code, if the server sent one.
fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

/// True when `e` says the connection is gone or the server is not
/// accepting connections (restarting, shutting down, refusing): a call may
/// succeed on a new connection later. SQL errors (constraint, syntax) are
/// not passing.
#[must_use]
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    match code(e) {
        None => true, // I/O, closed connection, connect failures
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
        }
    }
}

/// As [`is_transient`] for an error of the pool.
#[must_use]
pub fn is_transient_pool(e: &PoolError) -> bool {
    match e {
        PoolError::Timeout(_) => true,
        PoolError::Backend(e) => is_transient(e),
        _ => false,
    }
}

/// The message for a failed first connection to `url` (already redacted)
/// as `user` to `database`: wrong credentials, a missing database and an
/// unreachable server each get their own.
#[must_use]
pub fn describe_connect_error(e: &PoolError, url: &str, user: &str, database: &str) -> String {
    if let PoolError::Timeout(_) = e {
        return format!(
            "cannot reach PostgreSQL at {url}: no connection within the connect timeout \
             (connect_timeout_ms); is the server running and the host right?"
        );
    }
    let PoolError::Backend(pg) = e else {
        return format!("cannot connect to PostgreSQL at {url}: {}", chain(e));
    };
    let detail = pg
        .as_db_error()
        .map_or_else(|| chain(pg), |db| db.message().to_string());
    match code(pg) {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            format!(
                "PostgreSQL at {url} refused the credentials of user {user:?}: {detail}; \
                 check the user and password in the URL"
            )
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => format!(
            "the database {database:?} does not exist on the PostgreSQL server at {url}: \
             {detail}; create it (e.g. `createdb {database}`) or fix the URL"
        ),
        _ => {
            let auth = chain(pg).contains("password");
            if auth {
                format!(
                    "PostgreSQL at {url} asked user {user:?} for a password: {detail}; \
                     put the password in the URL"
                )
            } else {
                format!(
                    "cannot reach PostgreSQL at {url}: {detail}; is the server running and \
                     the URL right?"
                )
            }
        }
    }
}
