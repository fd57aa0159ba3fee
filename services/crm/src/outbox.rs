//! `crm outbox parked|retry`: outbox rows the relay set aside because they failed
//! alone while the rows around them were published — with why — and returning
//! them to the relay once the cause is fixed. Run against the service's database.

use crate::OutboxAction;

pub async fn run(action: OutboxAction, settings: &crm_runtime::Settings) -> anyhow::Result<()> {
    let db = crate::jobs::open_database(settings).await?;
    match action {
        OutboxAction::Parked { limit } => {
            let rows = crm_bus::outbox::parked(&db, limit).await?;
            for row in &rows {
                println!(
                    "{}  {}  source={}  routing_key={}  attempts={}  parked_at={}  reason={}",
                    row.message_id,
                    row.message_type,
                    row.source,
                    row.routing_key,
                    row.attempts,
                    row.parked_at.map(|at| at.to_rfc3339()).unwrap_or_default(),
                    row.last_error.as_deref().unwrap_or("?"),
                );
            }
            println!("{} outbox row(s) set aside", rows.len());
        }
        OutboxAction::Retry { message_ids } => {
            let returned = crm_bus::outbox::retry_parked(&db, &message_ids).await?;
            println!("{returned} outbox row(s) returned to the relay");
        }
    }
    Ok(())
}
