//! `hangar`: start a node, or inspect a plugin.
//!
//! Thin on purpose: parse the command line, set up logging, call the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hangar_host::config::HangarConfig;
use hangar_host::plugin;
use hangar_host::Modules;

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
    c.finish().map_err(|e| e.to_string())?;
    Ok(c)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the node");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hangar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(hangar_host::run(
        config,
        Modules::plugins(),
        |addr| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "PORT={}", addr.port());
            let _ = out.flush();
        },
        shutdown_signal(),
    ));
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("loadable:    no");
            println!("reason:      {e}");
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
    }
}
