//! The `careline` command line. Everything it runs lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use careline::config::{Config, LogFormat, Overrides, PortRange};
use careline::server::Server;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "careline",
    version,
    about = "Self-hosted voice platform for healthcare contact centers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes, so any command can be pointed at any instance.
#[derive(Args)]
struct Common {
    /// Configuration file (default: ./careline.toml when present)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: keys, certificates, database, recordings (default ./data)
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: SIP (UDP, TCP, TLS), media, HTTP health and metrics.
    Serve(ServeArgs),
    /// Print the effective configuration (defaults < file < CARELINE_* env < flags) as TOML.
    Config(ServeArgs),
    /// Contact flows (Amazon Connect flow language).
    #[command(subcommand)]
    Flow(FlowCommand),
}

#[derive(Subcommand)]
enum FlowCommand {
    /// Check flow files as `serve` would load them: every problem, each naming file, action
    /// Identifier, Type and reason. Exits 1 when any file would not load.
    Validate {
        /// Flow files (bare or DescribeContactFlow-wrapped JSON)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Load unsupported action types with their error branch (flows.strict = false)
        #[arg(long)]
        lenient: bool,
    },
}

#[derive(Args, Default)]
struct ServeArgs {
    /// SIP UDP and TCP listen address
    #[arg(long, value_name = "ADDR:PORT")]
    sip_listen: Option<SocketAddr>,
    /// SIP over TLS listen address
    #[arg(long, value_name = "ADDR:PORT")]
    tls_listen: Option<SocketAddr>,
    /// Do not listen for SIP over TLS
    #[arg(long, conflicts_with = "tls_listen")]
    no_tls: bool,
    /// HTTP listen address (/healthz, /metrics)
    #[arg(long, value_name = "ADDR:PORT")]
    http_listen: Option<SocketAddr>,
    /// RTP port range
    #[arg(long, value_name = "LO-HI")]
    rtp_ports: Option<PortRange>,
    /// Maximum concurrent calls (503 + Retry-After beyond)
    #[arg(long, value_name = "N")]
    max_calls: Option<usize>,
    /// Prompt folder (<lang>/<name>.wav)
    #[arg(long, value_name = "DIR")]
    prompts_dir: Option<PathBuf>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}` is not text or json")),
    }
}

fn load(common: &Common, args: &ServeArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: common.data_dir.clone(),
        sip_listen: args.sip_listen,
        tls_listen: args.tls_listen,
        no_tls: args.no_tls,
        http_listen: args.http_listen,
        rtp_ports: args.rtp_ports,
        max_calls: args.max_calls,
        prompts_dir: args.prompts_dir.clone(),
        log_format: common.log_format,
    };
    Ok(Config::load(
        common.config.as_deref(),
        std::env::vars(),
        &overrides,
    )?)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() {
    if let Err(e) = run() {
        // One readable line (with causes), not a Debug dump: operators read this.
        eprintln!("careline: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Config(args) => {
            let config = load(&cli.common, args)?;
            print!("{}", toml_of(&config)?);
            Ok(())
        }
        Command::Flow(FlowCommand::Validate { files, lenient }) => {
            let mut config = load(&cli.common, &ServeArgs::default())?;
            if *lenient {
                config.flows.strict = false;
            }
            // Prompts resolve PromptId references; without the folder those are reported.
            let prompts = careline::media::prompt::PromptLibrary::load(&config.prompts.dir)
                .map(std::sync::Arc::new)
                .map_err(|e| eprintln!("careline: warning: prompts not loaded ({e})"))
                .ok();
            let diagnostics = careline::flow::engine::validate_files(&config, prompts, files);
            for d in &diagnostics {
                println!("{d}");
            }
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            if errors > 0 {
                anyhow::bail!("{errors} error(s) in {} file(s)", files.len());
            }
            println!("{} file(s) OK", files.len());
            Ok(())
        }
        Command::Serve(args) => {
            let config = load(&cli.common, args)?;
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

fn toml_of(config: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(config)?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let grace = Duration::from_secs(config.calls.drain_grace_secs);
    let server = Server::start(config).await?;
    wait_for_shutdown().await;
    server.drain(grace).await;
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
