//! A live progress bar (indicatif) for a [`LoadRun`]: elapsed/total, requests, last
//! second's rate, failures and p99.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::LoadRun;

/// Redraw period.
pub const REFRESH: Duration = Duration::from_millis(200);

/// Shows a bar on stderr until the run ends (hidden when stderr is not a terminal).
pub async fn show(run: &LoadRun, total: Duration) {
    let bar = ProgressBar::with_draw_target(
        Some(total.as_millis() as u64),
        ProgressDrawTarget::stderr_with_hz(5),
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(REFRESH);
    while !run.is_finished() {
        tick.tick().await;
        let live = run.live();
        bar.set_position((started.elapsed().as_millis() as u64).min(total.as_millis() as u64));
        bar.set_message(format!(
            "{} req  {:.0} req/s  {} err  p99 {}",
            live.requests,
            live.rate,
            live.failures,
            live.p99_ms
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
        ));
    }
    bar.finish_and_clear();
}
