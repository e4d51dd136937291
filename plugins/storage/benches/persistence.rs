//! Persistence bench: group-commit throughput and latency on redb with
//! fsync on, and the time to load a large map.
//!
//! `cargo bench -p hangar-storage --bench persistence` (add `-- --quick` for
//! a short run). The database goes to `$HANGAR_BENCH_DIR` or the system temp
//! directory: put it on the disk you want to measure (tmpfs makes fsync free).
//!
//! Measures, for 100-byte and 1 KiB values and 1, 16, 64 concurrent writers:
//! committed records/s and the enqueue-to-durable latency p50/p99 of each
//! write (every write is a distinct key, so nothing is coalesced away); then
//! the time to load 1M small records with `load_map`, and the file size.
//! It prints the machine's conditions first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use hangar_core::{LwwRecord, RawValue, Timestamp};
use hangar_storage::persistence::bench::{
    ms, percentile, persisted_writers, write_records, RecordFn,
};
use hangar_storage::persistence::{PersistenceBackend, RedbBackend, StoredEntry, DB_FILE_NAME};

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
}

/// The mount that holds `dir`: device, file system type and options.
fn mount_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 4 && dir.starts_with(f[1])).then(|| {
                (
                    f[1].len(),
                    format!("{} on {} type {} ({})", f[0], f[1], f[2], f[3]),
                )
            })
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, m)| m)
}

/// Raw fdatasync latency of the bench directory's disk, as a baseline.
fn fsync_baseline(dir: &Path) -> (Duration, Duration) {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut lat = Vec::new();
    for i in 0..200u64 {
        f.seek(SeekFrom::Start(i * 4096)).unwrap();
        f.write_all(&[b'x'; 4096]).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(path);
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn print_conditions(dir: &Path) {
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let mem = first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/version").unwrap_or_default();
    let (p50, p99) = fsync_baseline(dir);
    println!("# conditions");
    println!(
        "machine : {cpu}, {} logical cores, {mem} RAM",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "kernel  : {}",
        kernel.split(" (").next().unwrap_or("").trim()
    );
    println!("disk    : {} ; dir {}", mount_of(dir), dir.display());
    println!("fsync   : ON (redb Durability::Immediate per group commit); raw 4 KiB write+fdatasync p50 {} p99 {}", ms(p50), ms(p99));
    println!("backend : redb 4 via RedbBackend, default cache; group commit max_group_ops 4096, linger 0");
    println!(
        "build   : {} profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release (bench)"
        }
    );
    println!();
}

fn value_of_size(size: usize) -> RawValue {
    // a msgpack str whose encoding is `size` bytes (header 1, 2 or 3 bytes)
    let header = if size <= 32 {
        1
    } else if size <= 257 {
        2
    } else {
        3
    };
    let v = RawValue::encode(&"x".repeat(size - header)).unwrap();
    assert_eq!(v.as_bytes().len(), size);
    v
}

fn record(value: &RawValue, ts: u64) -> StoredEntry {
    StoredEntry::Lww(LwwRecord {
        value: ROption::RSome(value.clone()),
        timestamp: Timestamp::new(ts, 0, "bench"),
        ttl_ms: ROption::RNone,
    })
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(DB_FILE_NAME)).map_or(0, |m| m.len())
}

async fn group_commit_run(dir: PathBuf, value_size: usize, writers: usize, run_for: Duration) {
    let backend: Arc<dyn PersistenceBackend> = Arc::new(RedbBackend::open(&dir).unwrap());
    let value = value_of_size(value_size);
    let f = persisted_writers(
        backend,
        writers,
        run_for,
        Arc::new(move |i| record(&value, i)),
    )
    .await;
    println!(
        "{:>5} B  {:>3} writers  {:>9.0} records/s  p50 {:>9}  p99 {:>9}  max {:>9}  {:>6} commits  {:>6.1} records/commit  file {:>6.1} MiB",
        value_size,
        writers,
        f.records_per_s(),
        ms(f.p50),
        ms(f.p99),
        ms(f.max),
        f.commits,
        f.records_per_commit(),
        file_size(&dir) as f64 / (1 << 20) as f64,
    );
}

async fn load_run(dir: PathBuf, records: u64) {
    let value = value_of_size(16);
    let b = RedbBackend::open(&dir).unwrap();
    let chunk = 10_000;
    let write_time = write_records(&b, "big", records, chunk, &{
        let value = value.clone();
        Arc::new(move |i| record(&value, i)) as RecordFn
    })
    .await;
    b.close().await.unwrap();
    drop(b);
    let t = Instant::now();
    let b = RedbBackend::open(&dir).unwrap();
    let open_time = t.elapsed();
    let t = Instant::now();
    let m = b.load_map("big").await.unwrap();
    let load_time = t.elapsed();
    assert_eq!(m.entries.len() as u64, records);
    let t = Instant::now();
    let keys = b.list_keys("big").await.unwrap();
    let keys_time = t.elapsed();
    assert_eq!(keys.len() as u64, records);
    b.close().await.unwrap();
    println!(
        "{records} records of 16 B values (keys `key-NNNNNNNN`): written in {chunk}-record commits in {:.2} s; \
         open {}; load_map {:.2} s ({:.0} records/s); list_keys {:.2} s; file {:.1} MiB ({:.0} B/record)",
        write_time.as_secs_f64(),
        ms(open_time),
        load_time.as_secs_f64(),
        records as f64 / load_time.as_secs_f64(),
        keys_time.as_secs_f64(),
        file_size(&dir) as f64 / (1 << 20) as f64,
        file_size(&dir) as f64 / records as f64,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let base = std::env::var_os("HANGAR_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = tempfile::Builder::new()
        .prefix("hangar-bench-")
        .tempdir_in(&base)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    print_conditions(root.path());
    let run_for = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    println!(
        "# group commit on redb, {}s per row, distinct keys (no coalescing)",
        run_for.as_secs()
    );
    for value_size in [100, 1024] {
        for writers in [1, 16, 64] {
            let dir = root.path().join(format!("gc-{value_size}-{writers}"));
            rt.block_on(group_commit_run(dir, value_size, writers, run_for));
        }
    }
    println!();
    println!("# load");
    let records = if quick { 100_000 } else { 1_000_000 };
    rt.block_on(load_run(root.path().join("load"), records));
}
