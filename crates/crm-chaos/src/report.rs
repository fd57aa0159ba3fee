//! The run in figures: what each fault cost the tellers, and the checks.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

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
