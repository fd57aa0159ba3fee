//! The events service's copy of the client book: each client's coverage (from
//! `client.coverage_changed`) and tier (from `client.tier_changed`). The timeline
//! is scoped by it with the suite's one access rule, and an event of a client the
//! copy does not have yet is held (kept, its rules not run) until the book
//! announces the client: the book's messages may lag the core-banking feed.
//!
//! Ingest and the announcement take the same per-client lock, so an event is
//! either seen as known (and applied at once) or held before the announcement
//! looks for held events: it is never held after that look, left waiting forever.

use std::collections::{BTreeSet, HashSet};

use crm_bus::HandlerError;
use crm_domain::messages::{CoverageChanged, TierChanged};
use crm_store::copies::save_if_newer;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder,
};

use crate::balance_watch::WatchRules;
use crate::error::{EventsError, Result};
use crate::ingest::{BankEvent, EventDetail};
use crate::store::{bank_event, event_client, event_client_tier, held_event};

/// Serializes work on clients' data across this service's replicas (on
/// PostgreSQL; SQLite has one writer at a time anyway): each client's lock, in the
/// order given (give them sorted, so two callers can't deadlock), in one statement,
/// held until the transaction ends. `purpose` keeps unrelated locks of the same
/// client apart.
pub async fn lock_clients<'a>(
    transaction: &DatabaseTransaction,
    purpose: &str,
    client_ids: impl IntoIterator<Item = &'a str>,
) -> std::result::Result<(), sea_orm::DbErr> {
    if transaction.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let keys: Vec<sea_orm::Value> = client_ids
        .into_iter()
        .map(|client_id| format!("{purpose}:{client_id}").into())
        .collect();
    for chunk in keys.chunks(1_000) {
        // VALUES keeps the order it is given in.
        let rows: Vec<String> = (1..=chunk.len()).map(|n| format!("(${n})")).collect();
        transaction
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT pg_advisory_xact_lock(hashtext(k)) FROM (VALUES {}) AS locks(k)",
                    rows.join(", ")
                ),
                chunk.to_vec(),
            ))
            .await?;
    }
    Ok(())
}

const KNOWN: &str = "known";

/// Which of `client_ids` the copy has.
pub async fn known(
    connection: &impl ConnectionTrait,
    client_ids: impl IntoIterator<Item = String>,
) -> std::result::Result<HashSet<String>, sea_orm::DbErr> {
    let ids: Vec<String> = client_ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(event_client::Entity::find()
        .filter(event_client::Column::ClientId.is_in(ids))
        .all(connection)
        .await?
        .into_iter()
        .map(|client| client.client_id)
        .collect())
}

/// Of `client_ids`, those the copy has, with the announcement lock held for
/// the others until the caller's transaction ends: their events can be held
/// safely (an announcement waits for the commit and then finds them).
pub async fn known_locking_unknown(
    transaction: &DatabaseTransaction,
    client_ids: BTreeSet<String>,
) -> std::result::Result<HashSet<String>, sea_orm::DbErr> {
    let mut found = known(transaction, client_ids.iter().cloned()).await?;
    let unknown: Vec<&String> = client_ids
        .iter()
        .filter(|id| !found.contains(*id))
        .collect();
    if unknown.is_empty() {
        return Ok(found);
    }
    // In id order (a BTreeSet's), so two batches can't deadlock on these locks.
    lock_clients(transaction, KNOWN, unknown.iter().map(|id| id.as_str())).await?;
    // Announced while we waited for the lock: known after all.
    found.extend(known(transaction, unknown.into_iter().cloned()).await?);
    Ok(found)
}

/// Takes the book's coverage news and applies the events held for a client it
/// announces.
pub async fn apply_coverage(
    transaction: &DatabaseTransaction,
    rules: &WatchRules,
    message: CoverageChanged,
) -> std::result::Result<(), HandlerError> {
    use event_client::Column;
    let client_id = message.client_id.clone();
    lock_clients(transaction, KNOWN, [client_id.as_str()]).await?;
    let row = event_client::ActiveModel {
        client_id: Set(message.client_id),
        home_branch_id: Set(message.home_branch_id),
        primary_rm_id: Set(message.primary_rm_id),
        wealth_manager_id: Set(message.wealth_manager_id),
        private_banker_id: Set(message.private_banker_id),
        do_not_contact: Set(message.do_not_contact),
        source_updated_at: Set(message.updated_at),
    };
    let columns = [
        Column::HomeBranchId,
        Column::PrimaryRmId,
        Column::WealthManagerId,
        Column::PrivateBankerId,
        Column::DoNotContact,
        Column::SourceUpdatedAt,
    ];
    save_if_newer(
        transaction,
        row,
        Column::ClientId,
        &columns,
        Column::SourceUpdatedAt,
    )
    .await?;
    let released = release_held(transaction, rules, &client_id).await?;
    if released > 0 {
        tracing::info!(%client_id, released, "held events applied: the client book announced the client");
    }
    Ok(())
}

/// Takes the book's tier news.
pub async fn apply_tier(
    transaction: &DatabaseTransaction,
    message: &TierChanged,
) -> std::result::Result<(), HandlerError> {
    use event_client_tier::Column;
    let row = event_client_tier::ActiveModel {
        client_id: Set(message.client_id.clone()),
        tier: Set(message.tier.clone()),
        source_updated_at: Set(message.changed_at),
    };
    save_if_newer(
        transaction,
        row,
        Column::ClientId,
        &[Column::Tier, Column::SourceUpdatedAt],
        Column::SourceUpdatedAt,
    )
    .await?;
    Ok(())
}

/// Runs the rules of `client_id`'s held events, oldest first, and forgets them;
/// how many.
async fn release_held(
    transaction: &DatabaseTransaction,
    rules: &WatchRules,
    client_id: &str,
) -> Result<usize> {
    let held = held_event::Entity::find()
        .filter(held_event::Column::ClientId.eq(client_id))
        .order_by_asc(held_event::Column::OccurredAt)
        .order_by_asc(held_event::Column::EventId)
        .all(transaction)
        .await?;
    if held.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = held.iter().map(|row| row.event_id.clone()).collect();
    let mut stored = bank_event::Entity::find()
        .filter(bank_event::Column::EventId.is_in(ids.clone()))
        .order_by_asc(bank_event::Column::OccurredAt)
        .order_by_asc(bank_event::Column::EventId)
        .all(transaction)
        .await?;
    // Pruned past the retention while held: nothing left to apply.
    stored.retain(|row| row.client_id == client_id);
    let events = stored
        .iter()
        .map(|row| {
            Ok(BankEvent {
                event_id: row.event_id.clone(),
                client_id: row.client_id.clone(),
                occurred_at: row.occurred_at,
                detail: serde_json::from_str::<EventDetail>(&row.detail).map_err(|error| {
                    EventsError::Corrupt(format!("event {}: {error}", row.event_id))
                })?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    crate::ingest::apply_rules_to_batch(transaction, rules, events.iter()).await?;
    held_event::Entity::delete_many()
        .filter(held_event::Column::EventId.is_in(ids))
        .exec(transaction)
        .await?;
    Ok(stored.len())
}

/// The copy of `client_id`, if the book has announced it.
pub async fn find(
    connection: &impl ConnectionTrait,
    client_id: &str,
) -> std::result::Result<Option<event_client::Model>, sea_orm::DbErr> {
    event_client::Entity::find_by_id(client_id)
        .one(connection)
        .await
}

/// The client's tier as last announced, if any.
pub async fn tier_of(
    connection: &impl ConnectionTrait,
    client_id: &str,
) -> std::result::Result<Option<String>, sea_orm::DbErr> {
    Ok(event_client_tier::Entity::find_by_id(client_id)
        .one(connection)
        .await?
        .map(|row| row.tier))
}
