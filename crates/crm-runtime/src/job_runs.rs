//! How every job runs, whoever starts it (`crm jobs NAME`, a Kubernetes CronJob,
//! or `crm serve`'s own scheduler on the embedded default): it takes the job's
//! lease (one statement that succeeds only when no unexpired lease exists),
//! records its run, renews the lease while it works, and records how it ended.
//! A second run started meanwhile records itself `skipped` and does nothing. A
//! run that died (kill -9, a node lost) leaves a `running` row without a live
//! lease: `crm jobs history` shows it `crashed`, and the next run — its lease
//! expired — does the work again; the jobs' own unique keys make that rerun
//! finish the work without duplicates.

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_store::Db;
use crm_store::jobs::{job_lease, job_run};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::module::{Job, JobContext, ModuleError};

/// How long a lease lasts without renewal: a crashed run's job is free again
/// after this.
pub const LEASE: Duration = Duration::from_secs(120);
/// How often a working run renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// How a run ended, as `job_runs.outcome` stores it.
pub mod outcome {
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const SKIPPED: &str = "skipped";
    /// Shown, never stored: a `running` row whose lease is gone.
    pub const CRASHED: &str = "crashed";
}

/// Who runs: host and process, for the history.
fn holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

fn lease_until(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(LEASE).unwrap_or_else(|_| chrono::Duration::minutes(2))
}

/// Takes `job`'s lease for `run_id` unless another run holds it unexpired.
async fn take_lease(
    db: &Db,
    job: &str,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, sea_orm::DbErr> {
    let lease = job_lease::ActiveModel {
        job: Set(job.to_owned()),
        run_id: Set(run_id.to_owned()),
        holder: Set(holder()),
        expires_at: Set(lease_until(now)),
    };
    // One statement: two runs racing for it can't both see it free.
    let taken = job_lease::Entity::insert(lease)
        .on_conflict(
            OnConflict::column(job_lease::Column::Job)
                .update_columns([
                    job_lease::Column::RunId,
                    job_lease::Column::Holder,
                    job_lease::Column::ExpiresAt,
                ])
                .action_and_where(
                    Expr::col((job_lease::Entity, job_lease::Column::ExpiresAt)).lt(now),
                )
                .to_owned(),
        )
        .exec_without_returning(db)
        .await;
    match taken {
        Ok(rows) => Ok(rows == 1),
        Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Renews the lease; false when this run no longer holds it (it expired and
/// another run took the job).
async fn renew_lease(db: &Db, job: &str, run_id: &str) -> Result<bool, sea_orm::DbErr> {
    let renewed = job_lease::Entity::update_many()
        .col_expr(
            job_lease::Column::ExpiresAt,
            Expr::value(lease_until(Utc::now())),
        )
        .filter(job_lease::Column::Job.eq(job))
        .filter(job_lease::Column::RunId.eq(run_id))
        .exec(db)
        .await?;
    Ok(renewed.rows_affected == 1)
}

/// Stops the lease's renewal however the run ends — a panic included, which
/// would otherwise leave the job leased, and every later run skipped, until the
/// process exits.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn record_end(
    db: &Db,
    run_id: &str,
    outcome: &str,
    summary: &str,
    error: &str,
) -> Result<(), sea_orm::DbErr> {
    job_run::Entity::update_many()
        .col_expr(job_run::Column::Outcome, Expr::value(outcome))
        .col_expr(job_run::Column::FinishedAt, Expr::value(Some(Utc::now())))
        .col_expr(job_run::Column::Summary, Expr::value(summary))
        .col_expr(job_run::Column::Error, Expr::value(error))
        .filter(job_run::Column::RunId.eq(run_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A failed run's error with its causes, as the history keeps it: "database
/// error: relation … does not exist" tells an operator what "database error"
/// alone does not. A cause whose words the text already holds is not repeated.
fn with_causes(error: &ModuleError) -> String {
    let mut said = error.to_string();
    let mut cause = match error {
        // Its text is the boxed error's own: go on from that error's causes.
        ModuleError::Failed(inner) => inner.source(),
        other => std::error::Error::source(other),
    };
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !said.contains(&text) {
            said.push_str(": ");
            said.push_str(&text);
        }
        cause = inner.source();
    }
    said
}

/// Runs `job` under its lease and records the run; answers the job's own line,
/// or says it was skipped because another run holds the job.
pub async fn run_recorded(job: &Job, context: JobContext) -> Result<String, ModuleError> {
    let db = context.db.clone();
    let run_id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let row = |outcome: &str, summary: String| job_run::ActiveModel {
        run_id: Set(run_id.clone()),
        job: Set(job.name.to_owned()),
        outcome: Set(outcome.to_owned()),
        holder: Set(holder()),
        started_at: Set(now),
        finished_at: Set((outcome == outcome::SKIPPED).then_some(now)),
        summary: Set(summary),
        error: Set(String::new()),
    };
    if !take_lease(&db, job.name, &run_id, now).await? {
        let holder = job_lease::Entity::find_by_id(job.name)
            .one(&db)
            .await?
            .map(|lease| format!("run {} on {}", lease.run_id, lease.holder))
            .unwrap_or_else(|| "another run".to_owned());
        let summary = format!("skipped: {holder} is running {}", job.name);
        row(outcome::SKIPPED, summary.clone()).insert(&db).await?;
        tracing::info!(job = job.name, %summary, "job skipped");
        return Ok(summary);
    }
    row(outcome::RUNNING, String::new()).insert(&db).await?;
    let span = tracing::info_span!("job", job = job.name, run_id = %run_id);
    let renewal = Renewal({
        let (db, job, run_id) = (db.clone(), job.name, run_id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match renew_lease(&db, job, &run_id).await {
                    Ok(true) => {}
                    // The database was away longer than the lease: another run
                    // may work beside this one now. The jobs' keys keep that from
                    // making anything twice; say so for the operator.
                    Ok(false) => tracing::warn!(job, run_id, "job lease lost to another run"),
                    Err(error) => tracing::warn!(%error, job, "job lease not renewed; retrying"),
                }
            }
        })
    });
    let started = std::time::Instant::now();
    let result = tracing::Instrument::instrument((job.run)(context), span).await;
    drop(renewal);
    record_run_metric(job.name, &result, started.elapsed());
    match &result {
        Ok(summary) => record_end(&db, &run_id, outcome::SUCCEEDED, summary, "").await?,
        Err(error) => {
            tracing::error!(job = job.name, %error, "job failed");
            record_end(&db, &run_id, outcome::FAILED, "", &with_causes(error)).await?
        }
    }
    job_lease::Entity::delete_many()
        .filter(job_lease::Column::Job.eq(job.name))
        .filter(job_lease::Column::RunId.eq(run_id.as_str()))
        .exec(&db)
        .await?;
    result
}

/// `crm.job.run.duration` by job and outcome: its count is the runs, so a failed
/// run shows as a series that moved (pushed over OTLP by a CronJob's process as
/// it exits; scraped from `crm serve` where it schedules the jobs itself).
fn record_run_metric(
    job: &'static str,
    result: &Result<String, ModuleError>,
    took: std::time::Duration,
) {
    static RUN_DURATION: std::sync::LazyLock<opentelemetry::metrics::Histogram<f64>> =
        std::sync::LazyLock::new(|| {
            crm_telemetry::meter()
                .f64_histogram("crm.job.run.duration")
                .with_unit("s")
                .with_description("Scheduled job runs, by job and outcome")
                .with_boundaries(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0])
                .build()
        });
    let outcome = if result.is_ok() {
        outcome::SUCCEEDED
    } else {
        outcome::FAILED
    };
    RUN_DURATION.record(
        took.as_secs_f64(),
        &[
            opentelemetry::KeyValue::new("crm.job.name", job),
            opentelemetry::KeyValue::new("crm.job.outcome", outcome),
        ],
    );
}

/// One run as `crm jobs history` shows it.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: job_run::Model,
    /// `outcome`, or `crashed` for a run that is `running` without a live lease.
    pub shown_outcome: String,
}

/// The latest runs (of `job`, or of every job), newest first.
pub async fn history(
    db: &Db,
    job: Option<&str>,
    limit: u64,
) -> Result<Vec<RunView>, sea_orm::DbErr> {
    let mut runs = job_run::Entity::find();
    if let Some(job) = job {
        runs = runs.filter(job_run::Column::Job.eq(job));
    }
    let runs = runs
        .order_by_desc(job_run::Column::StartedAt)
        .order_by_desc(job_run::Column::RunId)
        .limit(limit)
        .all(db)
        .await?;
    let now = Utc::now();
    let leases = job_lease::Entity::find().all(db).await?;
    Ok(runs
        .into_iter()
        .map(|run| {
            let alive = leases
                .iter()
                .any(|lease| lease.run_id == run.run_id && lease.expires_at >= now);
            let shown_outcome = if run.outcome == outcome::RUNNING && !alive {
                outcome::CRASHED.to_owned()
            } else {
                run.outcome.clone()
            };
            RunView { run, shown_outcome }
        })
        .collect())
}

/// The next `count` times a cron `schedule` fires after `after`, in `time_zone`.
pub fn next_runs(
    schedule: &str,
    time_zone: chrono_tz::Tz,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<chrono_tz::Tz>>, String> {
    let mut times = Vec::with_capacity(count);
    let mut from = after.with_timezone(&time_zone);
    for _ in 0..count {
        let next = cron_parser::parse(schedule, &from)
            .map_err(|error| format!("schedule {schedule:?}: {error}"))?;
        times.push(next);
        from = next;
    }
    Ok(times)
}

/// What `crm serve` on the embedded default runs on their schedules.
pub struct Scheduler {
    pub db: Db,
    pub settings: crate::ModuleSettings,
    pub calendar: crm_domain::sla::BusinessCalendar,
    pub vault: std::sync::Arc<crm_store::Vault>,
    pub jobs: Vec<Job>,
}

impl Scheduler {
    /// One task per scheduled job: sleep until its next time in the bank's time
    /// zone, run it recorded (so the lease keeps a `crm jobs NAME` started beside
    /// it from working at the same time), repeat, until `shutdown`.
    pub fn spawn(
        self,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        for job in self.jobs.into_iter().filter(|job| job.schedule.is_some()) {
            let (db, settings, calendar, shutdown) = (
                self.db.clone(),
                self.settings.clone(),
                self.calendar.clone(),
                shutdown.clone(),
            );
            let vault = Some(self.vault.clone());
            tasks.spawn(async move {
                let schedule = job.schedule.unwrap_or_default();
                loop {
                    let now = Utc::now();
                    let next = match next_runs(schedule, calendar.time_zone, now, 1) {
                        Ok(times) => match times.first() {
                            Some(next) => next.with_timezone(&Utc),
                            None => return,
                        },
                        Err(error) => {
                            tracing::error!(job = job.name, %error, "job not scheduled");
                            return;
                        }
                    };
                    let wait = (next - now).to_std().unwrap_or_default();
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    let args = match job.command().try_get_matches_from([job.name]) {
                        Ok(args) => args,
                        Err(error) => {
                            tracing::error!(job = job.name, %error, "job's flags have no defaults; not run");
                            return;
                        }
                    };
                    let context = JobContext {
                        db: db.clone(),
                        settings: settings.clone(),
                        args,
                        calendar: calendar.clone(),
                        vault: vault.clone(),
                    };
                    match run_recorded(&job, context).await {
                        Ok(summary) => tracing::info!(job = job.name, %summary, "scheduled job ran"),
                        Err(error) => tracing::error!(job = job.name, %error, "scheduled job failed"),
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_runs;
    use chrono::TimeZone;

    #[test]
    fn schedules_count_in_the_bank_time_zone() {
        // 23:30 UTC on 31 March is 07:30 on 1 April in Shanghai: a job at 06:30
        // local time next runs on 2 April local.
        let after = chrono::Utc
            .with_ymd_and_hms(2026, 3, 31, 23, 30, 0)
            .unwrap();
        let runs = next_runs("30 6 * * *", chrono_tz::Asia::Shanghai, after, 2).unwrap();
        assert_eq!(runs[0].to_rfc3339(), "2026-04-02T06:30:00+08:00");
        assert_eq!(runs[1].to_rfc3339(), "2026-04-03T06:30:00+08:00");
        assert!(next_runs("not a schedule", chrono_tz::Asia::Shanghai, after, 1).is_err());
    }
}
