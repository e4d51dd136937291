//! The machine a bench runs on, read from `/proc`, for the conditions every
//! bench prints beside its figures. Shared by bench binaries through
//! `#[path = ".../common/machine.rs"] mod machine;`.

/// The CPU model named in `/proc/cpuinfo`; `None` where it cannot be read.
pub fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    })
}

/// The 1, 5 and 15-minute load averages, space-separated; `n/a` where
/// `/proc/loadavg` cannot be read.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// This process's resident set in KiB (`VmRSS`); `None` where it cannot be
/// read.
pub fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
