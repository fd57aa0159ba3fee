//! The transactional outbox and its relay.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use crm_store::Backend;
use crm_store::bus::outbox;
use sea_orm::sea_query::{ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, Envelope};

/// Writes `envelope` into the outbox of `source`, inside the caller's transaction.
pub async fn enqueue(
    connection: &impl ConnectionTrait,
    source: &str,
    envelope: &Envelope,
) -> Result<(), sea_orm::DbErr> {
    let row = outbox::ActiveModel {
        message_id: Set(envelope.message_id.clone()),
        source: Set(source.to_owned()),
        message_type: Set(envelope.message_type.clone()),
        routing_key: Set(envelope.routing_key.clone()),
        schema_version: Set(envelope.schema_version),
        payload: Set(String::from_utf8_lossy(&envelope.payload).into_owned()),
        traceparent: Set(envelope.traceparent.clone()),
        occurred_at: Set(envelope.occurred_at),
        sent_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
    };
    outbox::Entity::insert(row)
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Writes a new message of `message_type` with `payload`, carrying the current
/// trace context, into the outbox of `source` inside the caller's transaction.
pub async fn enqueue_event<T: serde::Serialize>(
    connection: &impl ConnectionTrait,
    source: &str,
    message_type: &str,
    routing_key: &str,
    payload: &T,
) -> Result<(), BusError> {
    let envelope = Envelope::new(message_type, routing_key, payload)?;
    enqueue(connection, source, &envelope).await?;
    Ok(())
}

/// Wakes the relay right after a commit, so a message doesn't wait for the next poll.
#[derive(Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes one service's outbox.
pub struct Relay {
    db: DatabaseConnection,
    bus: Bus,
    source: String,
    waker: OutboxWaker,
    pub batch_size: u64,
    pub poll_interval: Duration,
    /// Sent rows older than this are deleted (they are history, not state).
    pub keep_sent_for: chrono::Duration,
}

impl Relay {
    pub fn new(db: DatabaseConnection, bus: Bus, source: &str, waker: OutboxWaker) -> Self {
        Self {
            db,
            bus,
            source: source.to_owned(),
            waker,
            batch_size: 200,
            poll_interval: Duration::from_millis(500),
            keep_sent_for: chrono::Duration::days(3),
        }
    }

    /// Claims up to a batch of unsent rows, publishes them with confirms, marks them
    /// sent, commits. Returns how many were sent. On any error nothing is marked
    /// sent, and the rows are published again on the next pass.
    pub async fn relay_once(&self) -> Result<usize, BusError> {
        let transaction = self.db.begin().await?;
        let mut query = outbox::Entity::find()
            .filter(outbox::Column::Source.eq(self.source.as_str()))
            .filter(outbox::Column::SentAt.is_null())
            .order_by_asc(outbox::Column::MessageId)
            .limit(self.batch_size);
        if Backend::of(&transaction) == Backend::Postgres {
            // Replicas share the outbox: each claims rows no other relay holds.
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(&transaction).await?;
        if rows.is_empty() {
            transaction.commit().await?;
            return Ok(0);
        }
        let envelopes: Vec<Envelope> = rows
            .iter()
            .map(|row| Envelope {
                message_id: row.message_id.clone(),
                message_type: row.message_type.clone(),
                routing_key: row.routing_key.clone(),
                occurred_at: row.occurred_at,
                schema_version: row.schema_version,
                traceparent: row.traceparent.clone(),
                payload: row.payload.clone().into_bytes(),
            })
            .collect();
        let ids: Vec<String> = rows.iter().map(|row| row.message_id.clone()).collect();
        if let Err(error) = self.bus.publish_confirmed(&envelopes).await {
            transaction.rollback().await?;
            self.record_failure(&ids, &error).await;
            return Err(error);
        }
        outbox::Entity::update_many()
            .col_expr(outbox::Column::SentAt, Utc::now().into())
            .filter(outbox::Column::MessageId.is_in(ids))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        tracing::debug!(source = %self.source, sent = rows.len(), "outbox relayed");
        Ok(rows.len())
    }

    /// Notes the failure on the rows for operators; best effort, the rows stay unsent.
    async fn record_failure(&self, ids: &[String], error: &BusError) {
        let result = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                sea_orm::sea_query::Expr::col(outbox::Column::Attempts).add(1),
            )
            .col_expr(outbox::Column::LastError, Some(error.to_string()).into())
            .filter(outbox::Column::MessageId.is_in(ids.to_vec()))
            .exec(&self.db)
            .await;
        if let Err(db_error) = result {
            tracing::debug!(error = %db_error, "could not record outbox failure");
        }
    }

    async fn delete_old_sent(&self) {
        let cutoff = Utc::now() - self.keep_sent_for;
        let result = outbox::Entity::delete_many()
            .filter(outbox::Column::Source.eq(self.source.as_str()))
            .filter(outbox::Column::SentAt.lt(cutoff))
            .exec(&self.db)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "could not prune sent outbox rows");
        }
    }

    /// Relays until `shutdown`, then drains what is pending (once) and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut passes: u64 = 0;
        loop {
            let result = self.relay_once().await;
            passes += 1;
            if passes % 10_000 == 1 {
                self.delete_old_sent().await;
            }
            let wait = match result {
                Ok(sent) if sent as u64 >= self.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.poll_interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(100u64 << Ord::min(failures, 6));
                    tracing::warn!(%error, source = %self.source, retry_in_ms = backoff.as_millis() as u64, "outbox relay failed");
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.0.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Drain: whatever was committed before shutdown goes out now if it can;
        // what can't stays in the outbox for the next start.
        for _ in 0..50 {
            match self.relay_once().await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        tracing::info!(source = %self.source, "outbox relay stopped");
    }
}
