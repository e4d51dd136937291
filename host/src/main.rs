//! `hangar`: start a node, inspect a plugin, or run the load generator.
//!
//! Thin on purpose: parse the command line, set up logging, call the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hangar_host::config::HangarConfig;
use hangar_host::plugin;
use hangar_host::Modules;

/// jemalloc for the whole process. Built unprefixed, it also takes the
/// plugins' `malloc`/`free` (they allocate through libc): the node spends a
/// large share of its time allocating and freeing small buffers across many
/// threads, where glibc's malloc measured about 30 % slower end to end
/// (host/BENCHMARKS.md). Only the binary sets it; embedders choose their own.
#[cfg(all(feature = "jemalloc", target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Hangar data-grid node.
#[derive(Parser, Debug)]
#[command(
    name = "hangar",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a node (the default when no command is given).
    Serve(ServeArgs),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Load generator: drive any TopGun-protocol server with OP_BATCH writes
    /// and print ops/s and ack latency.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// WebSocket URL of the server; several, comma-separated, spread the
    /// connections over them round-robin.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Ops per OP_BATCH.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Write concern: MEMORY, APPLIED, REPLICATED or PERSISTED.
    #[arg(long, default_value = "MEMORY")]
    concern: String,
    /// Ack timeout sent with each batch, in ms.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Run for this long (`10s`, `500ms`, `2m`).
    #[arg(long, conflicts_with = "ops")]
    duration: Option<String>,
    /// Stop after this many ops instead.
    #[arg(long)]
    ops: Option<u64>,
    /// JWT for servers that require authentication.
    #[arg(long)]
    token: Option<String>,
    /// Map written to.
    #[arg(long, default_value = "bench")]
    map: String,
    /// Replication consistency sent in every OP_BATCH: EVENTUAL, QUORUM or
    /// STRONG (default: none sent, the server's default applies).
    #[arg(long)]
    consistency: Option<String>,
    /// Keys to write: all, owned-by:<nodeId> or not-owned-by:<nodeId>
    /// (chosen from the first URL's PARTITION_MAP).
    #[arg(long, default_value = "all")]
    keys: String,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("--duration {s:?}: expected a number with ms, s or m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("--duration {s:?}: unit must be ms, s or m")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("--duration {s:?}: must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn bench(a: &BenchArgs) -> ExitCode {
    use hangar_host::bench::{BenchConfig, Stop};
    let Some(concern) = hangar_core::WriteConcern::parse(&a.concern.to_ascii_uppercase()) else {
        eprintln!(
            "hangar bench: --concern {:?}: expected MEMORY, APPLIED, REPLICATED or PERSISTED",
            a.concern
        );
        return ExitCode::from(2);
    };
    let consistency = match hangar_host::protocol::parse_consistency(a.consistency.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hangar bench: --consistency: {e}");
            return ExitCode::from(2);
        }
    };
    let keys = match hangar_host::bench::KeySelection::parse(&a.keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("hangar bench: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = match (&a.duration, a.ops) {
        (_, Some(n)) => Stop::Ops(n),
        (Some(d), None) => match parse_duration(d) {
            Ok(d) => Stop::Duration(d),
            Err(e) => {
                eprintln!("hangar bench: {e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => Stop::Duration(std::time::Duration::from_secs(10)),
    };
    let config = BenchConfig {
        url: a.url.clone(),
        connections: a.connections,
        batch: a.batch,
        value_size: a.value_size,
        concern,
        timeout_ms: a.timeout_ms,
        stop,
        token: a.token.clone(),
        map: a.map.clone(),
        consistency,
        keys,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hangar bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hangar_host::bench::run(config)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hangar bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// Print a plugin's manifest and whether this host would load it.
    Inspect {
        /// The plugin file (`.so`, `.dylib`, `.dll`).
        file: PathBuf,
        /// Requirement on the plugin's own version to judge against.
        #[arg(long, default_value = "*")]
        require: String,
    },
}

#[derive(Args, Debug, Default, Clone)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Client port; 0 binds an ephemeral port (printed as `PORT=<n>`).
    #[arg(long)]
    port: Option<u16>,
    /// Address to bind.
    #[arg(long)]
    host: Option<String>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Node id (no `:`).
    #[arg(long)]
    node_id: Option<String>,
    /// Directory searched first for plugins.
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// Storage plugin: crate name or file path.
    #[arg(long)]
    storage_plugin: Option<String>,
    /// Cluster plugin: crate name or file path.
    #[arg(long)]
    cluster_plugin: Option<String>,
    /// Log filter, e.g. `info` or `hangar_host=debug,plugin=debug`.
    #[arg(long)]
    log: Option<String>,
    /// Cluster transport port (node-to-node traffic and gossip); 0 picks one.
    /// Sets the cluster plugin's `HANGAR_CLUSTER_PORT`, as do the next two
    /// flags `HANGAR_SEED_NODES` and `HANGAR_CLUSTER_ID`.
    #[arg(long)]
    cluster_port: Option<u16>,
    /// Seed nodes' cluster addresses, comma-separated `host:port` (host names
    /// are re-resolved periodically, e.g. a headless service).
    #[arg(long, value_name = "HOST:PORT,...")]
    seed_nodes: Option<String>,
    /// Cluster id; nodes of another cluster are refused.
    #[arg(long)]
    cluster_id: Option<String>,
    /// Address peers and clients reach this node at (in the partition map).
    #[arg(long)]
    advertise_host: Option<String>,
    /// Start with an empty store when the existing store file is damaged,
    /// moving the damaged file aside (`[storage] reset_damaged_store`).
    /// Whatever the damaged store held is not loaded.
    #[arg(long)]
    reset_damaged_store: bool,
}

fn effective_config(a: &ServeArgs) -> Result<HangarConfig, String> {
    let mut c = match &a.config {
        Some(f) => HangarConfig::from_file(f).map_err(|e| e.to_string())?,
        None => HangarConfig::default(),
    };
    c.apply_env(|k| std::env::var(k).ok())
        .map_err(|e| e.to_string())?;
    if let Some(v) = a.port {
        c.port = v;
    }
    if let Some(v) = &a.host {
        c.host.clone_from(v);
    }
    if let Some(v) = &a.data_dir {
        c.data_dir.clone_from(v);
    }
    if let Some(v) = &a.node_id {
        c.node_id.clone_from(v);
    }
    if let Some(v) = &a.plugin_dir {
        c.plugins.dir = Some(v.clone());
    }
    if let Some(v) = &a.storage_plugin {
        c.plugins.storage.clone_from(v);
    }
    if let Some(v) = &a.cluster_plugin {
        c.plugins.cluster.clone_from(v);
    }
    if let Some(v) = &a.log {
        c.log.clone_from(v);
    }
    // The cluster plugin's flags set the variables it declares (the host
    // does not read its settings; a plugin that does not declare one is
    // refused by name when it is loaded).
    if let Some(v) = a.cluster_port {
        c.cluster.set_flag("--cluster-port", v.to_string());
    }
    if let Some(v) = &a.seed_nodes {
        c.cluster.set_flag("--seed-nodes", v.clone());
    }
    if let Some(v) = &a.cluster_id {
        c.cluster.set_flag("--cluster-id", v.clone());
    }
    if let Some(v) = &a.advertise_host {
        c.cluster.advertise_host = Some(v.clone());
    }
    if a.reset_damaged_store {
        // A shorthand for the default storage plugin's setting; a plugin
        // without it refuses the key by name.
        c.storage.set("reset_damaged_store", true);
    }
    c.finish().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are registered when
/// this is called, not when the future is first polled: the node polls it
/// only once it is serving, and a signal arriving before that (during
/// start-up, or between printing `PORT=` and the first poll) must still
/// stop it cleanly instead of killing it by the default action. Must be
/// called inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("Ctrl-C received"),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT; only Ctrl-C will stop the node");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Every client connection holds a file descriptor: lift the soft limit to
/// the hard one before listening, and say what the node got.
fn raise_fd_limit() {
    #[cfg(unix)]
    match hangar_host::server::raise_fd_limit() {
        Ok(l) if l.after > l.before => tracing::info!(
            from = l.before,
            to = l.after,
            "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
        ),
        Ok(l) => tracing::info!(limit = l.after, "open-file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot raise the open-file limit (RLIMIT_NOFILE); connections past it are refused"
        ),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match effective_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hangar: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = hangar_host::logging::init(&config.log) {
        eprintln!("hangar: {e}");
        return ExitCode::from(2);
    }
    raise_fd_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hangar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Registered before start-up: see `shutdown_signal`.
        let shutdown = shutdown_signal();
        hangar_host::run(
            config,
            Modules::plugins(),
            |addr| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "PORT={}", addr.port());
                let _ = out.flush();
            },
            shutdown,
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("hangar: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(file: &std::path::Path, require: &str) -> ExitCode {
    let req = match semver::VersionReq::parse(require) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hangar: --require {require:?} is not a semver requirement: {e}");
            return ExitCode::from(2);
        }
    };
    let report = plugin::inspect(file, &req);
    println!("file:        {}", report.path.display());
    match &report.manifest {
        Some(m) => {
            println!("name:        {}", m.name);
            println!(
                "kind:        {}",
                m.kind.map_or("unknown".to_string(), |k| k.to_string())
            );
            println!("version:     {}", m.version);
            println!("description: {}", m.description);
            println!(
                "abi:         {} (host: {})",
                m.abi_version,
                hangar_core::abi::ABI_VERSION
            );
            println!("target:      {}", m.target);
            println!("rustc:       {}", m.rustc);
            println!(
                "panic:       {}",
                if m.panic_unwind { "unwind" } else { "abort" }
            );
        }
        None => println!("manifest:    (unreadable)"),
    }
    match &report.verdict {
        Ok(()) => {
            println!("loadable:    yes");
            inspect_settings(file, report.manifest.as_ref())
        }
        Err(e) => {
            println!("loadable:    no");
            println!("reason:      {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a loadable plugin's settings (its root module's
/// `describe_settings`, called after every check passed, like its
/// constructor would be).
fn inspect_settings(file: &std::path::Path, manifest: Option<&plugin::Manifest>) -> ExitCode {
    let Some(kind) = manifest.and_then(|m| m.kind) else {
        return ExitCode::SUCCESS;
    };
    let described = plugin::load(
        file,
        &plugin::Expectation {
            kind,
            version: semver::VersionReq::STAR,
        },
    )
    .and_then(|p| plugin::describe_settings(&p));
    match described {
        Ok(d) => {
            println!("settings:");
            for line in plugin::render_settings(&kind.to_string(), &d).lines() {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("settings:    cannot be described: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None => serve(&cli.serve),
        Some(Command::Serve(a)) => serve(a),
        Some(Command::Plugins(PluginsCommand::Inspect { file, require })) => inspect(file, require),
        Some(Command::Bench(a)) => bench(a),
    }
}
