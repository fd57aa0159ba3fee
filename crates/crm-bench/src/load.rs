//! A closed-loop load: `callers` tasks, each sending its next request when the last
//! one answered, for a fixed time after a warm-up. Latencies go into one
//! HDR histogram per scenario; a scenario's figures are read against the run's
//! baseline scenario, measured the same way in the same process.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub callers: usize,
    pub warm_up: Duration,
    pub measure: Duration,
}

pub struct Measured {
    pub name: String,
    pub latencies: Histogram<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Measured {
    fn micros(&self, quantile: f64) -> u64 {
        self.latencies.value_at_quantile(quantile)
    }

    pub fn p99_ms(&self) -> f64 {
        self.micros(0.99) as f64 / 1000.0
    }

    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The figures as the JSON results hold them; with a baseline, the
    /// latencies as multiples of its.
    pub fn figures(&self, baseline: Option<&Measured>) -> serde_json::Value {
        let ms = |q: f64| self.micros(q) as f64 / 1000.0;
        let mut figures = serde_json::json!({
            "calls": self.latencies.len(),
            "errors": self.errors,
            "calls_per_second": self.throughput(),
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "max_ms": self.latencies.max() as f64 / 1000.0,
        });
        if let Some(baseline) = baseline {
            figures["p50_x_baseline"] =
                (self.micros(0.5) as f64 / baseline.micros(0.5).max(1) as f64).into();
            figures["p99_x_baseline"] =
                (self.micros(0.99) as f64 / baseline.micros(0.99).max(1) as f64).into();
            figures["calls_per_second_x_baseline"] =
                (self.throughput() / baseline.throughput().max(f64::EPSILON)).into();
        }
        figures
    }
}

/// Runs `call(caller, n)` in a closed loop from `shape.callers` tasks.
pub async fn run<F, Fut>(name: &str, shape: LoadShape, call: F) -> anyhow::Result<Measured>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let start = Instant::now();
    let measure_from = start + shape.warm_up;
    let end = measure_from + shape.measure;
    let mut tasks = Vec::with_capacity(shape.callers);
    for caller in 0..shape.callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let answer = call(caller, n).await;
                n += 1;
                if sent < measure_from {
                    continue;
                }
                match answer {
                    Ok(()) => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latencies.saturating_record(micros.max(1));
                    }
                    Err(status) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("  {status:?}");
                        }
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for task in tasks {
        let (caller_latencies, caller_errors) = task.await??;
        latencies.add(caller_latencies)?;
        errors += caller_errors;
    }
    Ok(Measured {
        name: name.to_owned(),
        latencies,
        errors,
        elapsed: shape.measure,
    })
}

/// The table `make bench` prints: each scenario, and its p50/p99 as a multiple
/// of the baseline's.
pub fn report(baseline: &Measured, scenarios: &[&Measured]) -> String {
    let mut out = format!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9} {:>9}\n",
        "scenario",
        "calls",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "calls/s",
        "p50 ×base",
        "p99 ×base"
    );
    for measured in std::iter::once(baseline).chain(scenarios.iter().copied()) {
        let ms = |q: f64| measured.micros(q) as f64 / 1000.0;
        let ratio = |q: f64| measured.micros(q) as f64 / baseline.micros(q).max(1) as f64;
        out.push_str(&format!(
            "{:<34} {:>8} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>7.0} {:>9.2} {:>9.2}\n",
            measured.name,
            measured.latencies.len(),
            measured.errors,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            measured.latencies.max() as f64 / 1000.0,
            measured.throughput(),
            ratio(0.5),
            ratio(0.99),
        ));
    }
    out
}
