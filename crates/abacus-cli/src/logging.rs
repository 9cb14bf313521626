//! Logging set-up: tracing to stderr, or to size-rotated files with `--log-dir`.

use std::path::PathBuf;

use abacus_server::telemetry::RotatingWriter;
use anyhow::Context as _;
use clap::Args;

/// Where logs go (global flags).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,abacus_server=debug`)
    /// [default: `info`; `warn` for `demo`; logs are off for `top` without --log-dir].
    #[arg(long, global = true, env = "ABACUS_LOG")]
    pub log: Option<String>,
    /// Write logs to size-rotated files `abacus.<n>.log` in this directory instead of stderr.
    #[arg(long, global = true, env = "ABACUS_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// Largest log file before rotating (with --log-dir).
    #[arg(long, global = true, default_value_t = 10 << 20)]
    pub log_max_file_bytes: u64,
    /// Cap on all log files together; the oldest are deleted (with --log-dir).
    #[arg(long, global = true, default_value_t = 100 << 20)]
    pub log_max_total_bytes: u64,
}

/// Installs the global subscriber. `default` is the filter when `--log` is not given;
/// `quiet_stderr` turns stderr logging off entirely (the TUI owns the terminal).
pub fn init(args: &LogArgs, default: &str, quiet_stderr: bool) -> anyhow::Result<()> {
    let filter_text = args.log.as_deref().unwrap_or(default);
    let filter = tracing_subscriber::EnvFilter::try_new(filter_text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match &args.log_dir {
        Some(dir) => {
            let writer = RotatingWriter::new(
                dir,
                "abacus",
                args.log_max_file_bytes,
                args.log_max_total_bytes,
            )
            .with_context(|| format!("opening log files in {}", dir.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
        }
        None if quiet_stderr => {}
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}
