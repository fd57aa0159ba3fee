//! The tables every service's one-shot jobs share: `job_runs`, one row per run
//! (start, end, outcome, what it did or the error), which `crm jobs history`
//! lists; and `job_leases`, one row per job while a run holds it, so two runs of
//! a job started at once (two schedulers, an operator and a CronJob) never work
//! side by side: the second finds the lease held and records itself skipped.

pub mod job_lease;
pub mod job_run;

mod migrations {
    pub mod m20261128_000024_job_runs_and_leases;
}

use sea_orm_migration::MigrationTrait;

/// The job tables' migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(
        migrations::m20261128_000024_job_runs_and_leases::Migration,
    )]
}
