//! The events service's one-shot jobs, run as `crm jobs <name>`.

use crm_runtime::{Job, JobContext, ModuleError};

use crate::EventsSettings;

pub const PRUNE_EVENTS: Job = Job {
    name: "prune-events",
    about: "Drop core-banking events older than CRM_EVENT_RETENTION_MONTHS: whole monthly \
            partitions on PostgreSQL, rows on SQLite, and their ids. Safe to run twice",
    args: |command| command,
    run: |context| Box::pin(prune_events(context)),
};

async fn prune_events(context: JobContext) -> Result<String, ModuleError> {
    let settings: EventsSettings = context.settings.section()?;
    let kept_from =
        crate::ingest::retention_start(chrono::Utc::now(), settings.event_retention_months);
    let dropped = crate::partitions::prune(&context.db, kept_from)
        .await
        .map_err(ModuleError::failed)?;
    Ok(format!(
        "events before {kept_from} dropped ({dropped} partitions or rows)"
    ))
}
