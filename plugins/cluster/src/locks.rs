//! Named locks with TTL leases and fencing tokens.
//!
//! Tokens come from one allocator per node that never goes backwards: each
//! token is greater than every token issued before, for any name, also after
//! an idle lock's entry was dropped and (when a state directory is given)
//! across restarts. The allocator reserves tokens in blocks and writes the
//! block's ceiling to disk (fsynced) before issuing from it, so a restarted
//! node starts above everything it ever issued. Tokens also never fall behind
//! `wall-clock ms * 1000`, which keeps them increasing across restarts even
//! without a state directory as long as the clock does not step back.
//!
//! A state directory whose ceiling cannot be written is refused when the
//! manager is built (the error names the file), not at the first lock: a
//! node that could not persist the ceiling would refuse every lock.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hangar_core::module::cluster_types::{LockGrant, LockRelease, LockRequest};
use hangar_core::{ErrorKind, ModuleError, ModuleResult};
use parking_lot::Mutex;

/// Shortest lease (ms).
pub const MIN_TTL_MS: u64 = 1_000;
/// Longest lease (ms).
pub const MAX_TTL_MS: u64 = 300_000;
const BLOCK: u64 = 1 << 20;
const TOKEN_FILE: &str = "fencing-token-ceiling";

/// Hands out fencing tokens that never go backwards.
#[derive(Debug)]
struct TokenAllocator {
    last: u64,
    ceiling: u64,
    file: Option<PathBuf>,
}

impl TokenAllocator {
    fn open(dir: Option<&Path>) -> ModuleResult<Self> {
        let file = dir.map(|d| d.join(TOKEN_FILE));
        let mut last = 0;
        if let Some(f) = &file {
            match fs::read_to_string(f) {
                Ok(s) => {
                    last = s.trim().parse().map_err(|_| {
                        ModuleError::new(
                            ErrorKind::STORAGE,
                            format!(
                                "{} holds {s:?}; expected the decimal ceiling of issued fencing tokens",
                                f.display()
                            ),
                        )
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ModuleError::storage(format!(
                        "cannot read {}: {e}",
                        f.display()
                    )))
                }
            }
        }
        let mut allocator = Self {
            last,
            ceiling: last,
            file,
        };
        // Prove now that the ceiling can be persisted: rewriting the current
        // one changes nothing on disk but fails as a later block would.
        allocator.reserve(last)?;
        Ok(allocator)
    }

    fn next(&mut self, now_ms: u64) -> ModuleResult<u64> {
        let t = (self.last + 1).max(now_ms.saturating_mul(1000));
        if self.file.is_some() && t >= self.ceiling {
            self.reserve(t + BLOCK)?;
        }
        self.last = t;
        Ok(t)
    }

    fn reserve(&mut self, ceiling: u64) -> ModuleResult<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{ceiling}")?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(parent) = path.parent() {
                fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            ModuleError::storage(format!(
                "cannot persist the fencing-token ceiling to {}: {e}",
                path.display()
            ))
        })?;
        self.ceiling = ceiling;
        Ok(())
    }
}

#[derive(Debug)]
struct Held {
    holder: String,
    token: u64,
    expires_at: u64,
}

/// The lock manager of this node.
#[derive(Debug)]
pub struct LockManager {
    state: Mutex<(HashMap<String, Held>, TokenAllocator)>,
}

impl LockManager {
    /// A lock manager; `state_dir` keeps the token ceiling across restarts.
    ///
    /// # Errors
    /// [`ErrorKind::STORAGE`] naming the ceiling file when it is unreadable
    /// or corrupt, or cannot be written (the directory cannot be created, is
    /// read-only, ...): every grant has to persist a ceiling first.
    pub fn new(state_dir: Option<&Path>) -> ModuleResult<Self> {
        Ok(Self {
            state: Mutex::new((HashMap::new(), TokenAllocator::open(state_dir)?)),
        })
    }

    /// Tries to take a lock. Free or expired: granted with a new token. Held
    /// by the same holder: the lease is extended and the token kept. Held by
    /// another: refused (never queued).
    ///
    /// # Errors
    /// [`ErrorKind::STORAGE`] when the token ceiling cannot be persisted.
    pub fn acquire(&self, req: &LockRequest, now_ms: u64) -> ModuleResult<LockGrant> {
        let ttl = req.ttl_ms.clamp(MIN_TTL_MS, MAX_TTL_MS);
        let mut st = self.state.lock();
        let (locks, tokens) = &mut *st;
        if let Some(h) = locks.get_mut(req.name.as_str()) {
            if h.expires_at >= now_ms {
                if h.holder == req.holder.as_str() {
                    h.expires_at = h.expires_at.max(now_ms + ttl);
                    return Ok(LockGrant {
                        granted: true,
                        fencing_token: h.token,
                    });
                }
                return Ok(LockGrant {
                    granted: false,
                    fencing_token: 0,
                });
            }
        }
        let token = tokens.next(now_ms)?;
        locks.insert(
            req.name.to_string(),
            Held {
                holder: req.holder.to_string(),
                token,
                expires_at: now_ms + ttl,
            },
        );
        Ok(LockGrant {
            granted: true,
            fencing_token: token,
        })
    }

    /// Releases a lock if holder and token match; false otherwise.
    pub fn release(&self, rel: &LockRelease) -> bool {
        let mut st = self.state.lock();
        let matches =
            st.0.get(rel.name.as_str())
                .is_some_and(|h| h.holder == rel.holder.as_str() && h.token == rel.fencing_token);
        if matches {
            st.0.remove(rel.name.as_str());
        }
        matches
    }

    /// Releases every lock of `holder`; returns how many.
    pub fn release_holder(&self, holder: &str) -> u32 {
        let mut st = self.state.lock();
        let before = st.0.len();
        st.0.retain(|_, h| h.holder != holder);
        u32::try_from(before - st.0.len()).unwrap_or(u32::MAX)
    }

    /// Drops expired leases; returns how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut st = self.state.lock();
        let before = st.0.len();
        st.0.retain(|_, h| h.expires_at >= now_ms);
        before - st.0.len()
    }

    /// Locks currently held.
    #[must_use]
    pub fn held(&self) -> usize {
        self.state.lock().0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, holder: &str, ttl: u64) -> LockRequest {
        LockRequest {
            name: name.into(),
            holder: holder.into(),
            ttl_ms: ttl,
        }
    }

    fn rel(name: &str, holder: &str, token: u64) -> LockRelease {
        LockRelease {
            name: name.into(),
            holder: holder.into(),
            fencing_token: token,
        }
    }

    #[test]
    fn t10_grant_refuse_extend_release() {
        let m = LockManager::new(None).unwrap();
        let g = m.acquire(&req("a", "c1", 5_000), 1_000).unwrap();
        assert!(g.granted);
        assert!(!m.acquire(&req("a", "c2", 5_000), 1_001).unwrap().granted);
        let again = m.acquire(&req("a", "c1", 5_000), 1_002).unwrap();
        assert_eq!(
            again.fencing_token, g.fencing_token,
            "same holder keeps its token"
        );
        assert!(!m.release(&rel("a", "c2", g.fencing_token)));
        assert!(!m.release(&rel("a", "c1", g.fencing_token + 1)));
        assert!(m.release(&rel("a", "c1", g.fencing_token)));
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn t11_tokens_strictly_increase_also_after_the_lock_went_idle() {
        let m = LockManager::new(None).unwrap();
        let mut last = 0;
        for i in 0..5 {
            let g = m.acquire(&req("a", "c", 1_000), 10).unwrap();
            assert!(g.fencing_token > last, "round {i}");
            last = g.fencing_token;
            assert!(m.release(&rel("a", "c", g.fencing_token)));
        }
    }

    #[test]
    fn t12_an_expired_lease_is_free_and_ttl_is_clamped() {
        let m = LockManager::new(None).unwrap();
        let g = m.acquire(&req("a", "c1", 0), 1_000).unwrap();
        assert!(g.granted);
        // clamped to 1000 ms: still held at 2000, free after
        assert!(!m.acquire(&req("a", "c2", 1_000), 2_000).unwrap().granted);
        let g2 = m.acquire(&req("a", "c2", 1_000), 2_001).unwrap();
        assert!(g2.granted && g2.fencing_token > g.fencing_token);
        assert_eq!(m.sweep(10_000), 1);
    }

    #[test]
    fn t13_release_holder_frees_all_of_its_locks() {
        let m = LockManager::new(None).unwrap();
        m.acquire(&req("a", "c1", 5_000), 0).unwrap();
        m.acquire(&req("b", "c1", 5_000), 0).unwrap();
        m.acquire(&req("c", "c2", 5_000), 0).unwrap();
        assert_eq!(m.release_holder("c1"), 2);
        assert_eq!(m.held(), 1);
    }

    #[test]
    fn t14_tokens_never_go_backwards_across_restarts_even_if_the_clock_does() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let m = LockManager::new(Some(dir.path())).unwrap();
            m.acquire(&req("a", "c", 1_000), 5_000_000)
                .unwrap()
                .fencing_token
        };
        // Restart with a clock far in the past.
        let m = LockManager::new(Some(dir.path())).unwrap();
        let second = m.acquire(&req("a", "c", 1_000), 1).unwrap().fencing_token;
        assert!(second > first, "{second} <= {first}");
    }

    #[test]
    fn t16_a_state_dir_where_the_ceiling_cannot_be_written_is_refused_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        // The ceiling reads as absent, but a directory sits where its
        // temporary file must be written: the write fails whoever runs the
        // test (root included).
        let state = dir.path().join("cluster");
        fs::create_dir_all(state.join(TOKEN_FILE).with_extension("tmp")).unwrap();
        let e = LockManager::new(Some(&state)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::STORAGE);
        assert!(
            e.message
                .contains("cannot persist the fencing-token ceiling")
                && e.message
                    .contains(&state.join(TOKEN_FILE).display().to_string()),
            "{e}"
        );
        // A writable one is fine, and its first grant is persisted.
        let ok = dir.path().join("ok");
        let m = LockManager::new(Some(&ok)).unwrap();
        assert!(m.acquire(&req("a", "c", 1_000), 5).unwrap().granted);
        assert!(ok.join(TOKEN_FILE).exists());
    }

    #[test]
    fn t15_a_corrupt_ceiling_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TOKEN_FILE), "banana").unwrap();
        let e = LockManager::new(Some(dir.path())).unwrap_err();
        assert!(e.message.contains("expected the decimal ceiling"), "{e}");
    }
}
