//! The client book's end of the suite's one audit trail (crm-audit): its own
//! lines, written in the transaction of the read or write they record, and the
//! lines other services send as `audit.recorded` messages, stored by a consumer.
//! Rows are only ever inserted (the database refuses updates and deletes). Reads
//! and denials record their line before the answer leaves, and a read whose line
//! cannot be written fails rather than go unrecorded.

use crate::store::{audit_event, client};
use crm_bus::{Envelope, HandlerError, MessageHandler};
use crm_domain::messages::AUDIT_RECORDED;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait};

pub(crate) use crm_audit::{Actor, AuditLine, ClientRef, Decision, Entry};

use crate::SERVICE;

/// What a line says about a stored client.
pub(crate) fn subject(model: &client::Model) -> ClientRef<'_> {
    ClientRef {
        client_id: &model.client_id,
        home_branch_id: &model.home_branch_id,
    }
}

/// The stored row of a line, wherever it was written.
fn row_of(line: AuditLine) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        audit_event_id: Set(line.audit_event_id),
        actor_id: Set(line.actor_id),
        actor_role: Set(line.actor_role),
        actor_branch_id: Set(line.actor_branch_id),
        action: Set(line.action),
        client_id: Set(line.client_id),
        client_branch_id: Set(line.client_branch_id),
        decision: Set(line.decision),
        reason: Set(line.reason),
        // Client ids are `[A-Z0-9-]`: a comma never occurs inside one.
        client_ids: Set(line.client_ids.join(",")),
        request_id: Set(line.request_id),
        occurred_at: Set(line.occurred_at),
        service: Set(line.service),
    }
}

/// The row of a line this service writes for `actor`.
pub(crate) fn row_for(
    actor: &Actor,
    entry: Entry,
    client_ids: Vec<String>,
) -> audit_event::ActiveModel {
    row_of(AuditLine::new(SERVICE, actor, entry, client_ids))
}

/// Appends `entries` for `actor`, in one statement.
pub(crate) async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<(), sea_orm::DbErr> {
    let rows: Vec<audit_event::ActiveModel> = entries
        .into_iter()
        .map(|entry| row_for(actor, entry, Vec::new()))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records a refusal and answers PERMISSION_DENIED with its reason (or the
/// database error that kept it from being recorded).
pub(crate) async fn refuse(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entry: Entry,
) -> crate::ClientsError {
    let why = entry.reason.clone();
    match record(db, actor, [entry]).await {
        Ok(()) => crate::ClientsError::PermissionDenied(why),
        Err(error) => error.into(),
    }
}

/// [`refuse`] inside an open transaction, which then commits only the refusal: on
/// SQLite's single connection a second connection would wait for this one.
pub(crate) async fn refuse_in(
    transaction: sea_orm::DatabaseTransaction,
    actor: &Actor,
    entry: Entry,
) -> crate::ClientsError {
    let refusal = refuse(&transaction, actor, entry).await;
    match transaction.commit().await {
        Ok(()) => refusal,
        Err(error) => error.into(),
    }
}

/// Stores the lines other services send. A line already stored (a redelivery
/// the inbox did not see, a replay from the dead-letter queue) is left as it is.
pub struct AuditLines;

#[async_trait::async_trait]
impl MessageHandler for AuditLines {
    async fn handle(
        &self,
        transaction: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        if envelope.message_type != AUDIT_RECORDED {
            return Err(HandlerError::Poison(format!(
                "unexpected message type {}",
                envelope.message_type
            )));
        }
        let line: AuditLine = envelope.decode()?;
        // The client book's own lines never travel: one that says it does is forged.
        if line.service == SERVICE {
            return Err(HandlerError::Poison(format!(
                "an audit.recorded line may not claim the service {SERVICE}"
            )));
        }
        audit_event::Entity::insert(row_of(line))
            .on_conflict_do_nothing_on([audit_event::Column::AuditEventId])
            .exec(transaction)
            .await?;
        Ok(())
    }
}
