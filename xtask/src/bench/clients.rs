//! Load generation: closed-loop and paced clients, and the latencies they measure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Latencies of one phase, in microseconds, as the client saw them and as the server logged
/// them (from request arrival to response, without the client's side and the network).
pub(super) struct Phase {
    pub(super) name: &'static str,
    pub(super) latencies: Vec<u64>,
    pub(super) server: Vec<u64>,
    pub(super) elapsed: Duration,
    pub(super) window: (SystemTime, SystemTime),
}

/// The `q` quantile of sorted microseconds, in milliseconds.
pub(super) fn quantile(sorted: &[u64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
    #[allow(clippy::cast_precision_loss)]
    let ms = sorted.get(i).copied().unwrap_or_default() as f64 / 1000.0;
    ms
}

impl Phase {
    /// Requests answered per second.
    pub(super) fn per_second(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let rate = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        rate
    }

    /// The client-side latency at quantile `q`, in milliseconds.
    pub(super) fn latency_ms(&mut self, q: f64) -> f64 {
        self.latencies.sort_unstable();
        quantile(&self.latencies, q)
    }

    pub(super) fn row(&mut self) -> String {
        self.latencies.sort_unstable();
        self.server.sort_unstable();
        let rate = self.per_second();
        format!(
            "| {} | {} | {rate:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.name,
            self.latencies.len(),
            quantile(&self.latencies, 0.50),
            quantile(&self.latencies, 0.90),
            quantile(&self.latencies, 0.99),
            quantile(&self.latencies, 1.0),
            quantile(&self.server, 0.50),
            quantile(&self.server, 0.99),
        )
    }
}

/// Adds the server's logged latency of each request to the phase it fell in.
pub(super) fn server_latencies(log: &Path, phases: &mut [Phase]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(log)?;
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some("request"), Some(latency_ms), Some(at)) = (
            entry["message"].as_str(),
            entry["latency_ms"].as_f64(),
            entry["timestamp"].as_str(),
        ) else {
            continue;
        };
        let at: SystemTime =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)?.into();
        if let Some(phase) = phases
            .iter_mut()
            .find(|p| p.window.0 <= at && at <= p.window.1)
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            phase.server.push((latency_ms * 1000.0) as u64);
        }
    }
    Ok(())
}

/// Runs `clients` loops of `step` until a step returns `false`; times every step.
pub(super) async fn run_clients<F, Fut>(
    clients: u64,
    client: &reqwest::Client,
    step: F,
) -> anyhow::Result<Phase>
where
    F: Fn(reqwest::Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let started = Instant::now();
    let window_start = SystemTime::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, step) = (client.clone(), step.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let at = Instant::now();
                if !step(client.clone()).await? {
                    return anyhow::Ok(latencies);
                }
                latencies.push(u64::try_from(at.elapsed().as_micros())?);
            }
        }));
    }
    gather(tasks, started, window_start).await
}

/// Runs `clients` loops of `step` for `duration`; times every step.
pub(super) async fn timed<F, Fut>(
    clients: u64,
    client: &reqwest::Client,
    duration: Duration,
    step: F,
) -> anyhow::Result<Phase>
where
    F: Fn(reqwest::Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    run_clients(clients, client, move |client| {
        let (step, counter) = (step.clone(), counter.clone());
        async move {
            if Instant::now() >= end {
                return Ok(false);
            }
            // A different pseudo-random patient each request, the same sequence every run.
            let seed = counter
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            step(client, seed >> 17).await?;
            Ok(true)
        }
    })
    .await
}

/// Runs `clients` concurrent clients that together start `rate` steps a second on a fixed
/// schedule (open loop) for `duration`. A step that could not start on time because its client
/// was still waiting for the previous answer is timed from its scheduled start, so a server
/// that falls behind is charged for the queue it causes (no coordinated omission); one that
/// starts late only because the generator's timer woke late (tokio's timers tick in whole
/// milliseconds) is timed from its actual start.
pub(super) async fn paced<F, Fut>(
    clients: u64,
    rate: u64,
    client: &reqwest::Client,
    duration: Duration,
    step: F,
) -> anyhow::Result<Phase>
where
    F: Fn(reqwest::Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let window_start = SystemTime::now();
    let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
    let total = duration.as_nanos() / interval.as_nanos().max(1);
    let total = u64::try_from(total)?;
    let mut tasks = Vec::new();
    for first in 0..clients {
        let (client, step) = (client.clone(), step.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // Client `first` takes steps first, first + clients, …: the schedule interleaved.
            let mut n = first;
            let mut free = started;
            while n < total {
                let scheduled = started + interval * u32::try_from(n)?;
                tokio::time::sleep_until(scheduled.into()).await;
                let from = if free > scheduled {
                    scheduled
                } else {
                    Instant::now()
                };
                step(client.clone(), n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17).await?;
                free = Instant::now();
                latencies.push(u64::try_from(free.duration_since(from).as_micros())?);
                n += clients;
            }
            anyhow::Ok(latencies)
        }));
    }
    gather(tasks, started, window_start).await
}

/// The phase the client tasks started at `started` measured.
pub(super) async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>>,
    started: Instant,
    window_start: SystemTime,
) -> anyhow::Result<Phase> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Phase {
        name: "",
        latencies,
        server: Vec::new(),
        elapsed: started.elapsed(),
        window: (window_start, SystemTime::now()),
    })
}
