//! Device identities: `"<deviceId>.<secret>"` tokens, minted by the node
//! and kept as a SHA-256 of the secret per (namespace, device id).
//!
//! A client keeps its token (from `DEVICE_ACK` or `AUTH_ACK`) and presents
//! it again on its next connection (`DEVICE_HELLO {deviceToken}`, or
//! `AUTH {deviceToken}`). A token that matches keeps the identity and its
//! confirmed epoch; anything else (none, malformed, unknown, wrong secret,
//! another principal's) mints a fresh identity, which starts without a
//! cursor. The namespace is the principal's user id, `""` without auth, so
//! one user's token never binds another user's device.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::Device;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw random bytes for a device token: {0}")]
pub struct DeviceError(String);

/// The outcome of [`super::Epochs::bind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The device id (the client is told it).
    pub device_id: String,
    /// The key the device is stored under.
    pub key: String,
    /// A new token when one was minted (the client must keep it).
    pub new_token: Option<String>,
}

/// The storage key of a device: namespace, U+0001, device id.
#[must_use]
pub fn key(namespace: &str, device_id: &str) -> String {
    format!("{namespace}\u{1}{device_id}")
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn random<const N: usize>() -> Result<[u8; N], DeviceError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| DeviceError(e.to_string()))?;
    Ok(b)
}

/// A fresh id (UUID v4 layout) and secret (32 bytes, hex).
fn mint() -> Result<(String, String), DeviceError> {
    let mut id = random::<16>()?;
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let h = hex(&id);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    Ok((id, hex(&random::<32>()?)))
}

/// Binds `token` under `namespace` in `devices`, minting an identity when
/// it does not match one. `epoch` is the current epoch.
pub(super) fn bind(
    devices: &mut BTreeMap<String, Device>,
    namespace: &str,
    token: Option<&str>,
    epoch: u64,
) -> Option<Binding> {
    if let Some((id, secret)) = token.and_then(|t| t.split_once('.')) {
        let k = key(namespace, id);
        if let Some(d) = devices.get_mut(&k) {
            if d.secret_sha256 == sha256_hex(secret) {
                d.seen_epoch = epoch;
                return Some(Binding {
                    device_id: id.to_string(),
                    key: k,
                    new_token: None,
                });
            }
        }
    }
    let (id, secret) = match mint() {
        Ok(m) => m,
        Err(e) => {
            // No randomness: the connection stays without a device (its
            // syncs count as unknown), rather than sharing a guessable id.
            tracing::warn!(error = %e, "device identity not minted");
            return None;
        }
    };
    let k = key(namespace, &id);
    devices.insert(
        k.clone(),
        Device {
            secret_sha256: sha256_hex(&secret),
            cursor: None,
            seen_epoch: epoch,
        },
    );
    Some(Binding {
        new_token: Some(format!("{id}.{secret}")),
        device_id: id,
        key: k,
    })
}
