//! `LOCK_REQUEST` / `LOCK_RELEASE` through the cluster module's lock
//! manager.
//!
//! The holder is the connection's cluster-unique name (`<nodeId>/<connId>`),
//! so the lock manager can release everything a connection held when it
//! goes away. A request never queues: it is granted (`LOCK_GRANTED` with a
//! fencing token) or refused (`LOCK_RELEASED {success: false}`). An absent
//! `ttl` means 10 000 ms; `ttl: 0` is refused.

use hangar_core::module::cluster_types::{LockRelease as CoreRelease, LockRequest as CoreRequest};

use crate::protocol::messages::{LockGranted, LockRelease, LockReleased, LockRequest};
use crate::protocol::Message;
use crate::server::session::Session;
use crate::server::state::FrontEnd;

/// Lease of a request that names none, in ms.
pub const DEFAULT_TTL_MS: u64 = 10_000;

fn refused(request_id: String, name: String) -> Message {
    Message::LockReleased {
        payload: LockReleased {
            request_id,
            name,
            success: false,
        },
    }
}

/// Tries to take the lock for this connection.
pub async fn request(fe: &FrontEnd, s: &mut Session, r: LockRequest) {
    let ttl = r.ttl.unwrap_or(DEFAULT_TTL_MS);
    if ttl == 0 || r.name.is_empty() {
        tracing::debug!(conn = s.id, name = %r.name, ttl, "lock request refused: ttl 0 or empty name");
        s.reply(&refused(r.request_id, r.name)).await;
        return;
    }
    let grant = fe
        .node
        .cluster
        .lock(CoreRequest {
            name: r.name.as_str().into(),
            holder: s.holder.as_str().into(),
            ttl_ms: ttl,
        })
        .await;
    let msg = match grant {
        Ok(g) if g.granted => {
            s.took_locks = true;
            Message::LockGranted {
                payload: LockGranted {
                    request_id: r.request_id,
                    name: r.name,
                    fencing_token: g.fencing_token,
                },
            }
        }
        Ok(_) => refused(r.request_id, r.name),
        Err(e) => {
            tracing::warn!(conn = s.id, name = %r.name, error = %e, "lock request failed");
            refused(r.request_id, r.name)
        }
    };
    s.reply(&msg).await;
}

/// Releases a lock this connection holds under `fencingToken`.
pub async fn release(fe: &FrontEnd, s: &Session, r: LockRelease) {
    let ok = fe
        .node
        .cluster
        .unlock(CoreRelease {
            name: r.name.as_str().into(),
            holder: s.holder.as_str().into(),
            fencing_token: r.fencing_token,
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(conn = s.id, name = %r.name, error = %e, "lock release failed");
            false
        });
    s.reply(&Message::LockReleased {
        payload: LockReleased {
            request_id: r.request_id.unwrap_or_default(),
            name: r.name,
            success: ok,
        },
    })
    .await;
}
