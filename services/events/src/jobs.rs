//! The events service's one-shot jobs, run as `crm jobs <name>`.

use crm_runtime::{Job, JobContext, ModuleError};

use crate::EventsSettings;

pub const PRUNE_EVENTS: Job = Job {
    name: "prune-events",
    about: "Drop core-banking events older than CRM_EVENT_RETENTION_MONTHS: whole monthly \
            partitions on PostgreSQL, rows on SQLite, and their ids. Safe to run twice",
    args: |command| command,
    run: |context| Box::pin(prune_events(context)),
    schedule: Some("30 2 * * *"),
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

pub const FEED_WATCH: Job = Job {
    name: "feed-watch",
    about: "Report the core-banking feed's health: clients whose events have been held \
            longer than CRM_HELD_EVENT_ALERT_MINUTES (the client book has not announced \
            them), and a feed silent for CRM_FEED_SILENT_MINUTES of business time. Read-only",
    args: |command| command,
    run: |context| Box::pin(feed_watch(context)),
    schedule: Some("*/10 * * * *"),
};

async fn feed_watch(context: JobContext) -> Result<String, ModuleError> {
    let settings: EventsSettings = context.settings.section()?;
    let watch = crate::feed_watch::FeedWatch {
        db: context.db.clone(),
        calendar: context.calendar.clone(),
        held_alert_minutes: i64::from(settings.held_event_alert_minutes),
        silent_minutes: i64::from(settings.feed_silent_minutes),
    };
    let report = watch
        .run(chrono::Utc::now())
        .await
        .map_err(ModuleError::failed)?;
    let mut lines = vec![match report.last_event_received_at {
        None => "feed: no event received yet".to_owned(),
        Some(at) if report.silent => {
            tracing::warn!(last_event = %at, business_minutes = report.silent_business_minutes, "core-banking feed silent");
            format!(
                "feed: SILENT, last event {at}, {} business minutes ago",
                report.silent_business_minutes
            )
        }
        Some(at) => format!(
            "feed: ok, last event {at}, {} business minutes ago",
            report.silent_business_minutes
        ),
    }];
    lines.push(format!("held events: {}", report.held_events));
    for client in &report.held_too_long {
        tracing::warn!(client_id = %client.client_id, events = client.events, since = %client.oldest_received_at, "events held: client not in the client book");
        lines.push(format!(
            "HELD TOO LONG: client {}: {} events since {} (not announced by the client book)",
            client.client_id, client.events, client.oldest_received_at
        ));
    }
    Ok(lines.join("\n"))
}

pub const MATURITY_SWEEP: Job = Job {
    name: "maturity-sweep",
    about: "Ask for one follow-up per product maturing in the next CRM_MATURITY_SWEEP_DAYS \
            (due CRM_MATURITY_LEAD_DAYS before it; those in the week before a month-, \
            quarter- or year-end flagged and of HIGH priority), as tasks of the quarter's maturity \
            campaign. Safe to run twice or concurrently: each is made once",
    args: |command| {
        command.arg(
            clap::Arg::new("now")
                .long("now")
                .value_parser(clap::value_parser!(chrono::DateTime<chrono::Utc>))
                .help("Sweep as of this time (RFC 3339) instead of now"),
        )
    },
    run: |context| Box::pin(maturity_sweep(context)),
    schedule: Some("15 7 * * *"),
};

async fn maturity_sweep(context: JobContext) -> Result<String, ModuleError> {
    let settings: EventsSettings = context.settings.section()?;
    let now = context
        .args
        .get_one::<chrono::DateTime<chrono::Utc>>("now")
        .copied()
        .unwrap_or_else(chrono::Utc::now);
    let sweep = crate::maturities::Sweep {
        days_ahead: i64::from(settings.maturity_sweep_days),
        lead_days: i64::from(settings.maturity_lead_days),
        time_zone: context.calendar.time_zone,
    };
    let swept = sweep
        .run(&context.db, now)
        .await
        .map_err(ModuleError::failed)?;
    Ok(format!(
        "{} maturities in the next {} days asked of the maturity campaigns ({} before a period end), in {} messages",
        swept.maturities, settings.maturity_sweep_days, swept.before_period_end, swept.messages
    ))
}
