//! The run in figures: what each fault cost the tellers, and the checks.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crm_telemetry::exposition::Exposition;

use crate::checks::Check;
use crate::coverage::CoverageRun;
use crate::faults::Window;
use crate::load::Call;

pub struct Run<'a> {
    pub args_referrals: u64,
    pub rate: u32,
    pub load_took: Duration,
    pub settled_in: Duration,
    pub sent_again: usize,
    pub calls: &'a [Call],
    pub windows: &'a [Window],
    pub coverage: &'a CoverageRun,
    pub checks: &'a [Check],
    /// Each process's `/metrics` after the run, and those that did not answer.
    pub scrapes: &'a [(&'static str, Exposition)],
    pub unscraped: &'a [String],
}

/// What the calls that began in one period came to.
#[derive(Default)]
struct Tally {
    calls: usize,
    first_try: usize,
    after_retry: usize,
    gave_up: usize,
    failed_attempts: usize,
    codes: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, call: &Call) {
        self.calls += 1;
        self.failed_attempts += call.failures.len();
        for code in &call.failures {
            *self.codes.entry(format!("{code:?}")).or_default() += 1;
        }
        match (&call.referral_id, call.failures.is_empty()) {
            (Some(_), true) => self.first_try += 1,
            (Some(_), false) => self.after_retry += 1,
            (None, _) => self.gave_up += 1,
        }
    }
}

pub fn render(run: &Run<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Chaos run\n");
    let _ = writeln!(
        out,
        "{} referrals at {}/s: the load took {:.1} s; settled {:.1} s after it; \
         {} sent again later by the teller app (every attempt had failed).\n",
        run.args_referrals,
        run.rate,
        run.load_took.as_secs_f64(),
        run.settled_in.as_secs_f64(),
        run.sent_again
    );
    let _ = writeln!(
        out,
        "| fault | window (s) | back to SERVING | calls begun | ok first try | ok after retry | every attempt failed | failed attempts (codes) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let mut quiet = Tally::default();
    let mut per_window: Vec<Tally> = run.windows.iter().map(|_| Tally::default()).collect();
    for call in run.calls {
        match run
            .windows
            .iter()
            .position(|w| call.started >= w.start && call.started < w.end)
        {
            Some(i) => per_window[i].add(call),
            None => quiet.add(call),
        }
    }
    let row = |out: &mut String, name: &str, window: String, back: String, tally: &Tally| {
        let codes: Vec<String> = tally
            .codes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {window} | {back} | {} | {} | {} | {} | {} ({}) |",
            tally.calls,
            tally.first_try,
            tally.after_retry,
            tally.gave_up,
            tally.failed_attempts,
            if codes.is_empty() {
                "-".to_owned()
            } else {
                codes.join(", ")
            }
        );
    };
    for (window, tally) in run.windows.iter().zip(&per_window) {
        row(
            &mut out,
            window.fault.name(),
            format!(
                "{:.1}–{:.1}",
                window.start.as_secs_f64(),
                window.end.as_secs_f64()
            ),
            format!("{:.1} s", window.recovered_after.as_secs_f64()),
            tally,
        );
    }
    row(&mut out, "no fault", "-".to_owned(), "-".to_owned(), &quiet);
    let _ = writeln!(
        out,
        "\nCore banking opened and covered {} clients meanwhile ({} attempts retried, {} errors).\n",
        run.coverage.covered.len(),
        run.coverage.retried_attempts,
        run.coverage.errors.len()
    );
    render_scrapes(&mut out, run);
    let _ = writeln!(out, "## Checks\n");
    for check in run.checks {
        let _ = writeln!(
            out,
            "- [{}] {}: {}",
            if check.passed { "x" } else { " " },
            check.name,
            check.detail
        );
    }
    out
}

/// `n` without a fraction when it has none (counters), else to two places.
fn figure(n: f64) -> String {
    // An empty sum is -0.0.
    let n = n + 0.0;
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

/// "a 3, b 1" from sums by a label's value; "-" when there are none.
fn breakdown(sums: &BTreeMap<String, f64>) -> String {
    if sums.is_empty() {
        return "-".to_owned();
    }
    sums.iter()
        .map(|(value, n)| format!("{value} {}", figure(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What each process's metrics said once the run settled: the figures a
/// platform team's dashboard would have shown.
fn render_scrapes(out: &mut String, run: &Run<'_>) {
    let _ = writeln!(
        out,
        "## Metrics after the run\n\nEach process's `/metrics` (CRM_METRICS_ADDR), scraped once \
         the run settled; also kept as `<process>.prom` here. Counters start over when a \
         process starts again, so a process killed during the run counts from its restart.\n"
    );
    let _ = writeln!(
        out,
        "| process | database up | broker up | RPCs by grpc status | outbox unsent | relay: messages sent (failed) | deliveries by outcome | redelivered | RM streams open |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (name, metrics) in run.scrapes {
        let consumed = "messaging_client_consumed_messages_total";
        let sent = "messaging_client_sent_messages_total";
        // A failed publish is counted with its `error_type`; a confirmed one without.
        let published = metrics
            .sum_by(sent, "error_type")
            .get("")
            .copied()
            .unwrap_or(0.0);
        let failed_sends = metrics.sum(sent, &[]) - published;
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            figure(metrics.sum("crm_database_up", &[])),
            figure(metrics.sum("crm_broker_up", &[])),
            breakdown(&by_status_name(&metrics.sum_by(
                "rpc_server_call_duration_seconds_count",
                "rpc_grpc_status_code"
            ))),
            figure(metrics.sum("crm_outbox_pending", &[])),
            figure(published),
            figure(failed_sends),
            breakdown(&metrics.sum_by(consumed, "crm_message_outcome")),
            figure(metrics.sum(consumed, &[("crm_message_redelivered", "true")])),
            figure(metrics.sum("crm_work_items_watch_streams", &[])),
        );
    }
    for process in run.unscraped {
        let _ = writeln!(out, "\nNot scraped: {process}");
    }
    let _ = writeln!(out);
}

/// Sums by gRPC status number, keyed by the status's name (`OK`, `UNAVAILABLE`).
fn by_status_name(by_number: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    for (number, n) in by_number {
        let name = match number.parse::<i32>() {
            Ok(code) => format!("{:?}", tonic::Code::from_i32(code)),
            Err(_) => number.clone(),
        };
        *by_name.entry(name).or_default() += n;
    }
    by_name
}
