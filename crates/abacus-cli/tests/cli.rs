//! The `abacus` binary end to end: `demo` and `load` (loopback only, bounded in time).

use std::process::Command;
use std::time::{Duration, Instant};

use abacus_server::config::Listen;
use abacus_server::{Config, Server};

fn abacus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_abacus"))
}

#[test]
fn demo_runs_for_three_seconds_and_prints_windows_and_an_exact_summary() {
    let started = Instant::now();
    let out = abacus()
        .args(["demo", "--duration", "3"])
        .output()
        .expect("run abacus demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(stdout.contains("── window"), "{stdout}");
    assert!(stdout.contains("checkout"), "{stdout}");
    assert!(stdout.contains("── summary"), "{stdout}");
    assert!(stdout.contains(": exact"), "{stdout}");
    assert!(stdout.contains("failed 0"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_json_report_matches_what_the_server_received() {
    let config = Config {
        listen: Listen::loopback_ephemeral(),
        window_ms: 3_600_000,
        // No files: history from earlier runs in ./abacus-data would be merged into queries.
        storage: abacus_server::sinks::StorageConfig::disabled(),
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let http = server.http_addr().unwrap();
    let state = server.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_abacus"))
        .args([
            "load",
            "--url",
            &format!("http://{http}"),
            "--duration",
            "1",
            "--herd",
            "16",
            "--peak",
            "8",
            "--services",
            "a,b",
            "--json",
            "--no-progress",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("abacus load ends within 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    let server_latency: u64 = state
        .windows()
        .query("latency", &[], None, None)
        .iter()
        .map(|r| r.count)
        .sum();
    assert!(report["requests"].as_u64().unwrap() > 0);
    assert_eq!(report["failures"], 0);
    assert_eq!(
        report["samples_sent"]["latency"].as_u64(),
        Some(server_latency)
    );
    let a: u64 = state
        .windows()
        .query("latency", &[("service".into(), "a".into())], None, None)
        .iter()
        .map(|r| r.count)
        .sum();
    assert!(a > 0 && a < server_latency);
}

#[test]
fn load_refuses_a_bad_profile_file_with_a_message() {
    let dir = std::env::temp_dir().join(format!("abacus-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "phases = []\nseries = []\n").unwrap();
    let out = abacus()
        .args(["load", "--profile", path.to_str().unwrap(), "--no-progress"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one phase"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn log_dir_rotates_files_under_the_total_cap() {
    let dir = std::env::temp_dir().join(format!("abacus-cli-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = abacus()
        .args([
            "--log",
            "debug",
            "--log-dir",
            dir.to_str().unwrap(),
            "--log-max-file-bytes",
            "1000",
            "--log-max-total-bytes",
            "3000",
            "demo",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    assert!(files.iter().sum::<u64>() <= 3000, "{files:?}");
    // Nothing went to stderr: the logs are in the files.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("DEBUG"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `abacus serve` with `args` on ephemeral ports, reads its log until it serves,
/// stops it, and returns the log.
fn serve_log(args: &[&str]) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile_dir("abacus-cli-warn");
    let mut child = abacus()
        .args([
            "serve",
            "--otlp-http-addr",
            "off",
            "--otlp-grpc-addr",
            "off",
        ])
        .args(["--data-dir", dir.to_str().unwrap(), "--no-sqlite"])
        .args(args)
        .env_remove("ABACUS_TOKEN")
        .env_remove("ABACUS_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start abacus serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("abacus serving") {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("abacus serve did not start within 30 s:\n{log}");
            }
        }
    }
    child.kill().expect("stop abacus serve");
    child.wait().unwrap();
    reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    log
}

fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Relaxed: a counter for unique names, nothing published with it.
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const EXPOSED_WARNING: &str = "listening on non-loopback addresses without a token";

#[test]
fn serve_on_a_non_loopback_address_without_a_token_warns() {
    // HTTP API on every interface (ephemeral port).
    let log = serve_log(&["--http-addr", "0.0.0.0:0", "--statsd-addr", "127.0.0.1:0"]);
    assert!(log.contains(EXPOSED_WARNING), "{log}");
    assert!(log.contains("WARN"), "{log}");
    // StatsD (UDP, which has no token at all) on every interface: the same warning.
    let log = serve_log(&["--http-addr", "127.0.0.1:0", "--statsd-addr", "0.0.0.0:0"]);
    assert!(log.contains(EXPOSED_WARNING), "{log}");
}

#[test]
fn serve_with_a_token_or_on_loopback_does_not_warn() {
    let log = serve_log(&[
        "--http-addr",
        "0.0.0.0:0",
        "--statsd-addr",
        "off",
        "--token",
        "t0ken",
    ]);
    assert!(!log.contains(EXPOSED_WARNING), "{log}");
    let log = serve_log(&["--http-addr", "127.0.0.1:0", "--statsd-addr", "127.0.0.1:0"]);
    assert!(!log.contains(EXPOSED_WARNING), "{log}");
    assert!(!log.contains(STATSD_WARNING), "{log}");
}

const STATSD_WARNING: &str = "StatsD listens on a non-loopback address";

#[test]
fn statsd_on_a_non_loopback_address_warns_even_with_a_token() {
    let log = serve_log(&[
        "--http-addr",
        "127.0.0.1:0",
        "--statsd-addr",
        "0.0.0.0:0",
        "--token",
        "t0ken",
    ]);
    assert!(log.contains(STATSD_WARNING), "{log}");
    assert!(!log.contains(EXPOSED_WARNING), "{log}");
}
