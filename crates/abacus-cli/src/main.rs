//! `abacus`: the command-line entry point. Thin on purpose: parse arguments, build a
//! configuration, call the library, map errors to exit codes.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use abacus_server::Config;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// mimalloc instead of the system allocator: OTLP decoding and conversion allocate a few
/// small strings per point, and glibc's malloc/free was ~29 % of the server's CPU under
/// OTLP load (crates/abacus-bench/SERVER-RESULTS.md). Declaring it needs no `unsafe`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// tools: `load`, `top`, `demo` and logging live in their own modules.
mod logging;
mod tools;

#[derive(Debug, Parser)]
#[command(name = "abacus", version, about = "High-throughput metrics aggregator")]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up and moved into the chosen command: the size of the variants does
// not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the aggregation daemon (HTTP API, OTLP HTTP/gRPC, StatsD).
    Serve(ServeArgs),
    // tools
    /// Drive a server with the load profile (ramp up, sustain, ramp down, thundering herd).
    Load(tools::LoadArgs),
    /// Live terminal dashboard of a server's services.
    Top(tools::TopArgs),
    /// Start a server, load it for a minute and print every window: the whole system at once.
    Demo(tools::DemoArgs),
    // end tools
}

/// A listen address, or `off`.
#[derive(Clone, Copy, Debug)]
struct ListenArg(Option<SocketAddr>);

fn listen_addr(s: &str) -> Result<ListenArg, String> {
    abacus_server::config::parse_listen_addr(s).map(ListenArg)
}

/// Flags override environment variables, which override the TOML file, which overrides
/// the defaults.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "ABACUS_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP API address, or `off` [default 127.0.0.1:3001].
    #[arg(long, env = "ABACUS_HTTP_ADDR", value_parser = listen_addr)]
    http_addr: Option<ListenArg>,
    /// OTLP/HTTP address, or `off` [default 127.0.0.1:4318].
    #[arg(long, env = "ABACUS_OTLP_HTTP_ADDR", value_parser = listen_addr)]
    otlp_http_addr: Option<ListenArg>,
    /// OTLP/gRPC address, or `off` [default 127.0.0.1:4317].
    #[arg(long, env = "ABACUS_OTLP_GRPC_ADDR", value_parser = listen_addr)]
    otlp_grpc_addr: Option<ListenArg>,
    /// StatsD UDP address, or `off` [default 127.0.0.1:8125].
    #[arg(long, env = "ABACUS_STATSD_ADDR", value_parser = listen_addr)]
    statsd_addr: Option<ListenArg>,
    /// StatsD TCP address (newline-delimited lines), or `off` [default off].
    #[arg(long, env = "ABACUS_STATSD_TCP_ADDR", value_parser = listen_addr)]
    statsd_tcp_addr: Option<ListenArg>,
    /// Window length in milliseconds [default 10000].
    #[arg(long, env = "ABACUS_WINDOW_MS")]
    window_ms: Option<u64>,
    /// Retention of closed windows in seconds [default 3600].
    #[arg(long, env = "ABACUS_RETENTION_SECS")]
    retention_secs: Option<u64>,
    /// Maximum number of live series [default 10000].
    #[arg(long, env = "ABACUS_MAX_SERIES")]
    max_series: Option<usize>,
    /// Bearer token required on ingest and query endpoints.
    #[arg(long, env = "ABACUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest JSON ingest body in bytes [default 4 MiB].
    #[arg(long, env = "ABACUS_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Requested StatsD socket receive buffer in bytes [default 4 MiB].
    #[arg(long, env = "ABACUS_STATSD_RECV_BUFFER")]
    statsd_recv_buffer: Option<usize>,
    /// HTTP/1: milliseconds to receive a request head (slowloris cut-off) [default 10000].
    #[arg(long, env = "ABACUS_HEADER_READ_TIMEOUT_MS")]
    header_read_timeout_ms: Option<u64>,
    /// Milliseconds to read a request body and answer (408 past it) [default 30000].
    #[arg(long, env = "ABACUS_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Open connections per TCP listener [default 1024].
    #[arg(long, env = "ABACUS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    #[command(flatten)]
    storage: StorageArgs,
}

// ---- storage sinks (abacus_server::sinks) ----

/// Storage and export sinks. Any `--dynamodb-*` flag turns DynamoDB on.
#[derive(Debug, Args)]
struct StorageArgs {
    /// Directory of the SQLite file (windows history, spill of remote sinks) [default ./abacus-data].
    #[arg(long, env = "ABACUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Do not store windows in SQLite (the file is still used to spill remote sinks).
    #[arg(long, env = "ABACUS_NO_SQLITE")]
    no_sqlite: bool,
    /// Delete SQLite rows older than this many seconds; 0 keeps all [default 604800].
    #[arg(long, env = "ABACUS_SQLITE_RETENTION_SECS")]
    sqlite_retention_secs: Option<u64>,
    /// Prometheus remote-write URL (http://...); turns remote-write export on.
    #[arg(long, env = "ABACUS_REMOTE_WRITE_URL")]
    remote_write_url: Option<String>,
    /// Bearer token sent to the remote-write receiver.
    #[arg(long, env = "ABACUS_REMOTE_WRITE_BEARER_TOKEN", hide_env_values = true)]
    remote_write_bearer_token: Option<String>,
    /// Extra remote-write header `NAME=VALUE` (repeatable), e.g. `X-Scope-OrgID=team-a`.
    #[arg(long = "remote-write-header", value_parser = header_arg)]
    remote_write_headers: Vec<(String, String)>,
    /// DynamoDB endpoint override (e.g. http://127.0.0.1:8000 for dynalite).
    #[arg(long, env = "ABACUS_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB table (created if absent) [default metrics-service].
    #[arg(long, env = "ABACUS_DYNAMODB_TABLE")]
    dynamodb_table: Option<String>,
    /// DynamoDB region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "ABACUS_DYNAMODB_REGION")]
    dynamodb_region: Option<String>,
}

fn header_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

impl StorageArgs {
    fn apply(self, s: &mut abacus_server::sinks::StorageConfig) {
        if let Some(d) = self.data_dir {
            s.data_dir = d;
        }
        if self.no_sqlite {
            s.sqlite.enabled = false;
        }
        if let Some(r) = self.sqlite_retention_secs {
            s.sqlite.retention_secs = r;
        }
        if let Some(url) = self.remote_write_url {
            s.remote_write.get_or_insert_with(Default::default).url = url;
        }
        if let Some(rw) = s.remote_write.as_mut() {
            if let Some(t) = self.remote_write_bearer_token {
                rw.bearer_token = Some(t);
            }
            rw.headers.extend(self.remote_write_headers);
        }
        if self.dynamodb_endpoint.is_some()
            || self.dynamodb_table.is_some()
            || self.dynamodb_region.is_some()
        {
            let d = s.dynamodb.get_or_insert_with(Default::default);
            if let Some(e) = self.dynamodb_endpoint {
                d.endpoint = Some(e);
            }
            if let Some(t) = self.dynamodb_table {
                d.table = t;
            }
            if let Some(r) = self.dynamodb_region {
                d.region = Some(r);
            }
        }
    }
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Config::from_toml_str(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(ListenArg(a)) = self.http_addr {
            c.listen.http = a;
        }
        if let Some(ListenArg(a)) = self.otlp_http_addr {
            c.listen.otlp_http = a;
        }
        if let Some(ListenArg(a)) = self.otlp_grpc_addr {
            c.listen.otlp_grpc = a;
        }
        if let Some(ListenArg(a)) = self.statsd_addr {
            c.listen.statsd = a;
        }
        if let Some(ListenArg(a)) = self.statsd_tcp_addr {
            c.listen.statsd_tcp = a;
        }
        if let Some(v) = self.window_ms {
            c.window_ms = v;
        }
        if let Some(v) = self.retention_secs {
            c.retention_secs = v;
        }
        if let Some(v) = self.max_series {
            c.max_series = v;
        }
        if self.token.is_some() {
            c.token = self.token;
        }
        if let Some(v) = self.max_body_bytes {
            c.limits.max_body_bytes = v;
        }
        if let Some(v) = self.statsd_recv_buffer {
            c.limits.statsd_recv_buffer_bytes = v;
        }
        if let Some(v) = self.header_read_timeout_ms {
            c.limits.header_read_timeout_ms = v;
        }
        if let Some(v) = self.request_timeout_ms {
            c.limits.request_timeout_ms = v;
        }
        if let Some(v) = self.max_connections {
            c.limits.max_connections = v;
        }
        self.storage.apply(&mut c.storage);
        c.validate()?;
        Ok(c)
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = term => tracing::info!("received SIGTERM"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let exposed = config.listen.non_loopback();
    if config.token.is_none() && !exposed.is_empty() {
        tracing::warn!(
            addrs = ?exposed,
            "listening on non-loopback addresses without a token: anyone who can reach them can write and read metrics (set --token / ABACUS_TOKEN)"
        );
    }
    // The token does not cover StatsD (UDP and the line protocol on TCP carry no auth): warn
    // about it even with a token.
    let statsd_exposed = [config.listen.statsd, config.listen.statsd_tcp]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback());
    if config.token.is_some() {
        for statsd in statsd_exposed {
            tracing::warn!(
                addr = %statsd,
                "StatsD listens on a non-loopback address: the StatsD protocol carries no token, anyone who can reach it can write metrics (keep StatsD on loopback)"
            );
        }
    }
    let server = abacus_server::Server::bind(config)
        .await
        .context("starting the server")?;
    tracing::info!(
        http = ?server.http_addr(),
        otlp_http = ?server.otlp_http_addr(),
        otlp_grpc = ?server.otlp_grpc_addr(),
        statsd = ?server.statsd_addr(),
        statsd_tcp = ?server.statsd_tcp_addr(),
        "abacus serving"
    );
    server.run(shutdown_signal()).await.context("serving")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // tools: logging set-up per command
    let (default_log, quiet) = match cli.command {
        Command::Demo(_) => ("warn", false),
        Command::Top(_) => ("info", true),
        _ => ("info", false),
    };
    if let Err(e) = logging::init(&cli.log, default_log, quiet) {
        eprintln!("abacus: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("abacus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        // tools
        Command::Load(args) => runtime.block_on(tools::load(args)),
        Command::Top(args) => runtime.block_on(tools::top(args)),
        Command::Demo(args) => runtime.block_on(tools::demo(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("abacus: {e:#}");
            ExitCode::FAILURE
        }
    }
}
