//! The live progress line (indicatif) shown on a terminal while a benchmark runs.

use std::cell::Cell;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::bench::echo::Window;

/// How often the line is refreshed.
const REFRESH: Duration = Duration::from_millis(250);

/// A spinner on stderr; indicatif draws nothing when stderr is not a terminal.
pub fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(REFRESH);
    bar
}

/// Shows the current rate of `completed` on `bar` until `window` ends.
pub async fn show_rate(bar: &ProgressBar, window: Window, completed: &Cell<u64>) {
    let mut ticks = tokio::time::interval(REFRESH);
    let mut last = (Instant::now(), completed.get());
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now >= window.end {
            return;
        }
        let count = completed.get();
        let rate = (count - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
        last = (now, count);
        if now < window.start {
            bar.set_message("warming up");
        } else {
            let measured = (now - window.start).as_secs_f64();
            let total = (window.end - window.start).as_secs_f64();
            bar.set_message(format!(
                "measuring {measured:.1}/{total:.1} s  {rate:.0} msg/s"
            ));
        }
    }
}
