//! `abacus load`, `abacus demo` (and the argument types of `abacus top`): thin wrappers
//! around `abacus-load`, `abacus-top` and `abacus-server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use abacus_load::{LoadConfig, LoadRun, ModeKind, Phase, Profile, Report, Target};
use abacus_server::config::Listen;
use abacus_server::windows::ServiceHealth;
use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// Protocol `abacus load` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// JSON `POST /metrics` on the HTTP API.
    Http,
    /// OTLP/HTTP protobuf.
    Otlp,
    /// StatsD over UDP.
    Statsd,
}

/// `abacus load`: drive a server with the seed profile (ramp up, sustain, ramp down,
/// thundering herd, baseline).
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    url: String,
    /// What to send.
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// OTLP/HTTP export URL (with --protocol otlp).
    #[arg(long, default_value = "http://127.0.0.1:4318/v1/metrics")]
    otlp_url: String,
    /// StatsD address (with --protocol statsd).
    #[arg(long, default_value = "127.0.0.1:8125")]
    statsd_addr: SocketAddr,
    /// TOML profile (phases, mode, series); phase flags below are then not allowed.
    #[arg(long, conflicts_with_all = ["ramp_up", "sustain", "ramp_down", "spike", "cooldown", "baseline", "peak", "herd"])]
    profile: Option<PathBuf>,
    /// Stretch or shrink the whole profile to this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Ramp-up seconds (baseline → peak).
    #[arg(long, default_value_t = 10.0)]
    ramp_up: f64,
    /// Sustain seconds at peak.
    #[arg(long, default_value_t = 20.0)]
    sustain: f64,
    /// Ramp-down seconds (peak → baseline).
    #[arg(long, default_value_t = 10.0)]
    ramp_down: f64,
    /// Thundering-herd spike seconds.
    #[arg(long, default_value_t = 5.0)]
    spike: f64,
    /// Final baseline seconds.
    #[arg(long, default_value_t = 10.0)]
    cooldown: f64,
    /// Baseline concurrency.
    #[arg(long, default_value_t = 4)]
    baseline: usize,
    /// Peak concurrency.
    #[arg(long, default_value_t = 40)]
    peak: usize,
    /// Thundering-herd concurrency.
    #[arg(long, default_value_t = 200)]
    herd: usize,
    /// Fixed-rate mode: requests per second (the phases then only give the duration).
    #[arg(long)]
    rate: Option<f64>,
    /// Fixed-rate mode: most requests in flight.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Label-set steps per request (each carries one sample per series).
    #[arg(long)]
    batch: Option<usize>,
    /// Comma-separated services to cycle through (label `service`).
    #[arg(long, value_delimiter = ',')]
    services: Vec<String>,
    /// Stop after this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Bearer token.
    #[arg(long, env = "ABACUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl LoadArgs {
    fn into_config(self) -> anyhow::Result<(LoadConfig, bool, bool)> {
        let mut profile = match &self.profile {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Profile::from_toml_str(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => Profile {
                phases: vec![
                    Phase::new("ramp_up", self.ramp_up, self.baseline, self.peak),
                    Phase::new("sustain", self.sustain, self.peak, self.peak),
                    Phase::new("ramp_down", self.ramp_down, self.peak, self.baseline),
                    Phase::new("thundering_herd", self.spike, self.herd, self.herd),
                    Phase::new("baseline", self.cooldown, self.baseline, self.baseline),
                ],
                ..Profile::default()
            },
        };
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration must be > 0");
            }
            profile.scale_to(Duration::from_secs_f64(d));
        }
        if let Some(rate) = self.rate {
            profile.mode = ModeKind::Rate;
            profile.rate = rate;
            profile.max_in_flight = self.max_in_flight;
        }
        if let Some(b) = self.batch {
            profile.batch = b;
        }
        if !self.services.is_empty() {
            let s: Vec<&str> = self.services.iter().map(String::as_str).collect();
            profile.set_services(&s);
        }
        profile.validate()?;
        let target = match self.protocol {
            Protocol::Http => Target::Http { base_url: self.url },
            Protocol::Otlp => Target::Otlp { url: self.otlp_url },
            Protocol::Statsd => Target::Statsd {
                addr: self.statsd_addr,
            },
        };
        let mut config = LoadConfig::new(target);
        config.profile = profile;
        config.token = self.token;
        config.timeout = Duration::from_millis(self.timeout_ms.max(1));
        config.max_requests = self.max_requests;
        Ok((config, self.json, !self.no_progress))
    }
}

/// Runs `abacus load`.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let (config, json, progress) = args.into_config()?;
    let total = config.profile.total();
    tracing::info!(target = %config.target, secs = total.as_secs_f64(), "Starting load");
    let run = LoadRun::start(config).context("starting the load")?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let bar = async {
        if progress {
            abacus_load::progress::show(&run, total).await;
        } else {
            while !run.is_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::select! {
        () = bar => {}
        _ = &mut ctrl_c => {
            tracing::info!("Interrupted; finishing in-flight requests");
            run.stop();
        }
    }
    let report = run.finish().await.context("running the load")?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// `abacus demo`: an in-process server on loopback, the load profile against it, every
/// closed window printed as a table, then a summary.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds of load (the seed profile is scaled to fit).
    #[arg(long, default_value_t = 55.0)]
    duration: f64,
    /// Window length in milliseconds [default: duration / 11, between 1 and 5 s].
    #[arg(long)]
    window_ms: Option<u64>,
    /// Listen on the default ports (3001, 4318, 4317, 8125) instead of ephemeral ones, so
    /// `abacus top` in another terminal can watch.
    #[arg(long)]
    default_ports: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One table of the services of the window starting at `start_ms`.
fn window_table(services: &[ServiceHealth], start_ms: u64, note: &str) -> String {
    use std::fmt::Write as _;
    let rows: Vec<&ServiceHealth> = services
        .iter()
        .filter(|s| s.last_window.start_ms == start_ms)
        .filter(|s| s.last_window.latency_count > 0 || s.last_window.requests.unwrap_or(0.0) > 0.0)
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let secs = rows.first().map_or(0.0, |s| s.last_window.seconds);
    let mut o = String::new();
    let _ = writeln!(o, "── window {} UTC ({secs:.1} s) {note}", clock(start_ms));
    let _ = writeln!(
        o,
        "{:<10} {:>9} {:>8} {:>7} {:>6} {:>8} {:>8} {:>8}",
        "service", "requests", "req/s", "errors", "err%", "p50 ms", "p95 ms", "p99 ms"
    );
    for s in rows {
        let w = &s.last_window;
        let _ = writeln!(
            o,
            "{:<10} {:>9} {:>8.1} {:>7} {:>6} {:>8} {:>8} {:>8}",
            s.service,
            w.requests.map_or(w.latency_count as f64, |r| r).round(),
            w.rate,
            w.errors.unwrap_or(0.0).round(),
            w.error_share
                .map_or_else(|| "-".to_owned(), |e| format!("{:.1}", e * 100.0)),
            opt(w.p50),
            opt(w.p95),
            opt(w.p99)
        );
    }
    o
}

/// Runs `abacus demo`.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be > 0");
    }
    let duration = Duration::from_secs_f64(args.duration);
    let window_ms = args
        .window_ms
        .unwrap_or_else(|| (duration.as_millis() as u64 / 11).clamp(1_000, 5_000));
    let mut config = abacus_server::Config {
        window_ms,
        ..abacus_server::Config::default()
    };
    // The demo keeps its SQLite file in a fresh temporary directory: history left by an
    // earlier demo in ./abacus-data would otherwise be merged into its windows and summary.
    let data_dir = std::env::temp_dir().join(format!("abacus-demo-{}", std::process::id()));
    config.storage.data_dir = data_dir.clone();
    if !args.default_ports {
        config.listen = Listen::loopback_ephemeral();
    }
    let server = abacus_server::Server::bind(config)
        .await
        .context("starting the demo server")?;
    let http = server.http_addr().context("the HTTP API is off")?;
    let state = server.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    println!(
        "abacus demo: server on http://{http} (window {:.1} s), load for {:.0} s: ramp up, sustain, ramp down, thundering herd, baseline",
        window_ms as f64 / 1000.0,
        duration.as_secs_f64()
    );
    println!("  try: curl -s http://{http}/services   |   abacus top --url http://{http}\n");

    let mut load = LoadConfig::new(Target::Http {
        base_url: format!("http://{http}"),
    });
    load.profile.scale_to(duration);
    let profile = load.profile.clone();
    let run = LoadRun::start(load).context("starting the load")?;
    let started = tokio::time::Instant::now();
    let mut last_start = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while !run.is_finished() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => { run.stop(); }
        }
        let view = state.services().view();
        let newest = view
            .iter()
            .map(|s| s.last_window.start_ms)
            .max()
            .unwrap_or(0);
        if newest > last_start {
            last_start = newest;
            let live = run.live();
            let note = profile
                .at(started.elapsed())
                .map(|(p, c)| {
                    format!(
                        "─ now: {} ({c} workers), {} requests sent",
                        p.name, live.requests
                    )
                })
                .unwrap_or_default();
            let table = window_table(&view, newest, &note);
            if !table.is_empty() {
                println!("{table}");
            }
        }
    }
    let report: Report = run.finish().await.context("running the load")?;
    let _ = stop_tx.send(());
    serving.await.context("server task")?.context("serving")?;
    // The final partial window was closed at shutdown.
    let view = state.services().view();
    let newest = view
        .iter()
        .map(|s| s.last_window.start_ms)
        .max()
        .unwrap_or(0);
    let table = window_table(&view, newest, "─ final partial window");
    if newest > last_start && !table.is_empty() {
        println!("{table}");
    }
    let sum = |name: &str, field: fn(&abacus_server::windows::WindowRow) -> f64| -> f64 {
        state
            .windows()
            .query(name, &[], None, None)
            .iter()
            .map(field)
            .sum()
    };
    let server_latency = sum("latency", |r| r.count as f64) as u64;
    let server_requests = sum("requests", |r| r.sum) as u64;
    println!("── summary");
    print!("{}", report.to_summary());
    let sent = report.samples_sent.get("latency").copied().unwrap_or(0);
    println!(
        "server     aggregated {server_latency} latency samples and {server_requests} request increments (load sent {sent} and {}){}",
        report.samples_sent.get("requests").copied().unwrap_or(0),
        if server_latency == sent {
            ": exact"
        } else {
            ": MISMATCH"
        }
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// `abacus top`: live dashboard of a server's services.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    url: String,
    /// Poll interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Bearer token.
    #[arg(long, env = "ABACUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs `abacus top`.
pub async fn top(args: TopArgs) -> anyhow::Result<()> {
    abacus_top::run(abacus_top::TopConfig {
        url: args.url,
        interval: Duration::from_millis(args.interval_ms.max(50)),
        token: args.token,
    })
    .await
    .context("abacus top")
}
