//! Damaged store files: each is refused at open with a message that says
//! what is wrong and what the operator can do, never taken for an empty
//! store; the explicit reset keeps the damaged file aside.

use std::path::{Path, PathBuf};

use super::marker_path;
use crate::persistence::testing::lww;
use crate::persistence::{
    PersistenceBackend, PersistenceError, RedbBackend, RedbOptions, DB_FILE_NAME,
};

const RECORDS: usize = 2_000;

/// A store of `RECORDS` records in one map, closed cleanly; returns its file.
async fn filled_store(dir: &Path) -> PathBuf {
    let b = RedbBackend::open(dir).unwrap();
    for chunk in 0..(RECORDS / 500) {
        let entries = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                (
                    format!("key-{n:05}"),
                    lww(Some(n as i64), n as u64 + 1, None),
                )
            })
            .collect();
        b.store("m", entries).await.unwrap();
    }
    b.close().await.unwrap();
    dir.join(DB_FILE_NAME)
}

fn damaged(r: Result<RedbBackend, PersistenceError>) -> (String, String) {
    match r {
        Err(PersistenceError::Damaged { path, detail }) => (path, detail),
        Err(other) => panic!("expected Damaged, got {other}"),
        Ok(_) => panic!("expected Damaged, the store opened"),
    }
}

/// What every refusal tells the operator.
fn assert_says_what_to_do(e: &PersistenceError) {
    let m = e.to_string();
    assert!(m.contains("is damaged"), "{m}");
    assert!(m.contains("Restore the file from a backup"), "{m}");
    assert!(m.contains("reset_damaged_store"), "{m}");
    assert!(m.contains("--reset-damaged-store"), "{m}");
    assert!(m.contains("moves the damaged file aside"), "{m}");
}

/// Overwrites `len` bytes at `at` with a pattern that is no valid page.
fn corrupt(file: &Path, at: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let junk: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(151) ^ 0xa5)
        .collect();
    f.write_all(&junk).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_zero_length_store_is_refused_not_taken_for_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(DB_FILE_NAME);
    std::fs::write(&file, b"").unwrap();
    let r = RedbBackend::open(dir.path());
    let e = r.as_ref().map(|_| ()).unwrap_err().clone();
    let (path, detail) = damaged(r);
    assert_eq!(path, file.display().to_string());
    assert!(detail.contains("empty (0 bytes)"), "{detail}");
    assert_says_what_to_do(&e);
    // nothing was changed: still empty, no marker
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
    assert!(!marker_path(&file).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_a_truncated_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled_store(dir.path()).await;
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let r = RedbBackend::open(dir.path());
    let e = r.as_ref().map(|_| ()).unwrap_err().clone();
    let (_, detail) = damaged(r);
    assert!(!detail.is_empty());
    assert_says_what_to_do(&e);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        len / 3,
        "left as found"
    );
}

/// Corrupts a page in the middle of the file (a data page of the entries
/// table: nearly all of the file).
fn corrupt_a_middle_page(file: &Path) {
    let len = std::fs::metadata(file).unwrap().len();
    corrupt(file, (len / 2) & !4095, 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_a_corrupt_page_after_an_unclean_shutdown_fails_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled_store(dir.path()).await;
    // an unclean shutdown leaves the marker behind
    std::fs::write(marker_path(&file), b"left by a crash").unwrap();
    corrupt_a_middle_page(&file);
    let r = RedbBackend::open(dir.path());
    let e = r.as_ref().map(|_| ()).unwrap_err().clone();
    let (_, detail) = damaged(r);
    assert!(detail.contains("integrity check"), "{detail}");
    assert_says_what_to_do(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_check_integrity_refuses_a_corrupt_page_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled_store(dir.path()).await;
    assert!(
        !marker_path(&file).exists(),
        "a clean close removes the marker"
    );
    corrupt_a_middle_page(&file);
    let opts = RedbOptions {
        check_integrity: true,
        ..RedbOptions::default()
    };
    let (_, detail) = damaged(RedbBackend::open_with(dir.path(), &opts));
    assert!(detail.contains("integrity check"), "{detail}");
}

/// Corrupts every 4 KiB page that holds `needle` (the data pages of the
/// entries table holding that key; none is read at open).
fn corrupt_pages_holding(file: &Path, needle: &[u8]) {
    let bytes = std::fs::read(file).unwrap();
    let pages: Vec<u64> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| (i as u64) & !4095)
        .collect();
    assert!(!pages.is_empty(), "no page holds {needle:?}");
    for p in pages {
        corrupt(file, p, 4096);
    }
}

/// A page that goes bad while the store is open is met at read time: the
/// read fails with `Damaged` (redb's panic is contained), the backend is
/// failed for good and says why, and later calls answer at once without
/// touching redb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_a_corrupt_page_met_at_read_time_fails_the_backend_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled_store(dir.path()).await;
    // no page cache worth the name, so that the read goes to the file
    let opts = RedbOptions {
        cache_size_bytes: Some(0),
        ..RedbOptions::default()
    };
    let b = RedbBackend::open_with(dir.path(), &opts).unwrap();
    corrupt_pages_holding(&file, b"key-01500");
    assert_eq!(b.failure(), None);
    let e = b.load_map("m").await.unwrap_err();
    assert!(matches!(e, PersistenceError::Damaged { .. }), "{e}");
    assert_says_what_to_do(&e);
    let why = b.failure().expect("the backend is failed");
    let again = b.list_keys("m").await.unwrap_err();
    assert_eq!(again, e, "every later call answers the same damage");
    assert!(e.to_string().contains(&why), "{e} / {why}");
    b.close().await.unwrap();
    assert!(
        marker_path(&file).exists(),
        "a failed store keeps its marker so the next open checks it"
    );
}

/// Random page corruption after a clean close, with no option set: the store
/// is refused at open (redb walks its trees at open and its panic is
/// contained), or, when the page was not live, it opens with every record.
/// It is never an empty or partial store without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t17_random_page_corruption_is_refused_or_harmless_never_silent() {
    let master = tempfile::tempdir().unwrap();
    let original = std::fs::read(filled_store(master.path()).await).unwrap();
    let pages = original.len() as u64 / 4096;
    let mut refused = 0;
    for seed in 0..pages {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DB_FILE_NAME);
        std::fs::write(&file, &original).unwrap();
        // every page but the header's (its damage is t11/t12's shape)
        let page = 1 + (seed * 7919) % (pages - 1);
        corrupt(&file, page * 4096, 4096);
        let b = match RedbBackend::open(dir.path()) {
            Err(e @ PersistenceError::Damaged { .. }) => {
                assert_says_what_to_do(&e);
                refused += 1;
                continue;
            }
            Err(e) => panic!("page {page}: expected Damaged, got {e}"),
            Ok(b) => b,
        };
        match b.load_map("m").await {
            Ok(m) => assert_eq!(
                m.entries.len(),
                RECORDS,
                "page {page}: records lost silently"
            ),
            Err(e) => assert!(
                matches!(
                    e,
                    PersistenceError::Damaged { .. } | PersistenceError::Corrupt { .. }
                ),
                "page {page}: {e}"
            ),
        }
        b.close().await.unwrap();
    }
    assert!(refused > 0, "no corruption was refused at open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_reset_damaged_starts_empty_and_keeps_the_damaged_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled_store(dir.path()).await;
    let original = std::fs::read(&file).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(original.len() as u64 / 3).unwrap();
    drop(f);
    let opts = RedbOptions {
        reset_damaged: true,
        ..RedbOptions::default()
    };
    let b = RedbBackend::open_with(dir.path(), &opts).unwrap();
    assert!(
        b.list_maps().await.unwrap().is_empty(),
        "a new, empty store"
    );
    b.close().await.unwrap();
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hangar.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        original[..original.len() / 3],
        "the damaged file is kept as it was"
    );
    // and the new store is a normal one from then on
    let b = RedbBackend::open(dir.path()).unwrap();
    b.store("m", vec![("k".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_the_marker_lives_while_open_and_a_clean_close_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    let file = dir.path().join(DB_FILE_NAME);
    assert!(marker_path(&file).exists());
    assert!(
        !dir.path().join("hangar.redb.new").exists(),
        "a new store is renamed into place"
    );
    b.close().await.unwrap();
    assert!(!marker_path(&file).exists());
    // a marker without its store: the store vanished while open
    std::fs::remove_file(&file).unwrap();
    std::fs::write(marker_path(&file), b"x").unwrap();
    let (_, detail) = damaged(RedbBackend::open(dir.path()));
    assert!(detail.contains("is missing"), "{detail}");
}
