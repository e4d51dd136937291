//! What every host bench prints first: the build profile, the CPUs and the
//! load average, so a figure is never read without its conditions.

/// `"<name> bench: <profile> build, <n> CPUs, loadavg <…>"`.
pub fn conditions(name: &str) -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!(
        "{name} bench: {profile} build, {cpus} CPUs, loadavg {}",
        load.trim()
    )
}
