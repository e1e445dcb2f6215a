//! How an import shows its progress: a bar on a terminal (resources, resources/s, errors, ETA),
//! a plain line every few seconds otherwise (logs, CI), and a summary at the end. Errors are
//! printed as they happen, `file:line: what` (never a value from the resource).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::ImportSummary;

/// A plain progress line at most this often when not on a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub(super) fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} resources  {per_sec}  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("0 errors");
            bar
        });
        Self {
            bar,
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub(super) fn advance(&mut self, resources: u64, summary: &ImportSummary) {
        self.done += resources;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                bar.set_message(format!("{} errors", summary.errors.len()));
            }
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                let left = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
                eprintln!(
                    "import: {}/{} resources, {rate:.0}/s, {} errors, ETA {left:.0} s",
                    self.done,
                    self.total,
                    summary.errors.len()
                );
            }
            None => {}
        }
    }

    pub(super) fn error(&self, report: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("error: {report}")),
            None => eprintln!("error: {report}"),
        }
    }

    pub(super) fn finish(&self, summary: &ImportSummary) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "import: {} stored, {} already stored, {} errors, in {:.1} s ({:.0} resources/s)",
            summary.stored,
            summary.unchanged,
            summary.errors.len(),
            summary.elapsed.as_secs_f64(),
            summary.resources_per_second()
        );
    }
}
