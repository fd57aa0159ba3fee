//! Consumers with manual acks and the inbox: process and record the message id in
//! one transaction, then ack. A redelivered message finds its id and has no second
//! effect.
//!
//! Failures are told apart by kind. A poison message (it can never be processed)
//! is dead-lettered at once with its reason. A transient failure (the database is
//! down or restarting, a deadlock) is retried in place with backoff while the
//! message is held unacknowledged, so an outage of minutes never uses up the
//! delivery limit of good messages. Only failures nobody classified are
//! redelivered and count toward that limit.

use std::sync::Arc;

use chrono::Utc;
use crm_store::bus::inbox;
use crm_store::db::is_unique_violation;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait, TransactionTrait,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Bus, BusError, Delivery, Envelope};
use backon::{ExponentialBuilder, Retryable};
use crm_store::db::DbFailure;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message can never be processed (bad payload, a row it can't write):
    /// dead-letter it now, with this reason.
    #[error("poison message: {0}")]
    Poison(String),
    /// A dependency is down or the work lost a race: retried in place, with
    /// backoff, holding the message — never counted toward the delivery limit.
    #[error("transient failure: {0}")]
    Transient(String),
    /// A failure nobody classified: redelivered, and dead-lettered when the
    /// delivery limit is reached.
    #[error("failure: {0}")]
    Failed(String),
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(error: sea_orm::DbErr) -> Self {
        match crm_store::db::classify(&error) {
            DbFailure::Unavailable | DbFailure::Conflict => {
                HandlerError::Transient(error.to_string())
            }
            DbFailure::Refused => HandlerError::Poison(error.to_string()),
            DbFailure::Unclassified => HandlerError::Failed(error.to_string()),
        }
    }
}

impl From<BusError> for HandlerError {
    fn from(error: BusError) -> Self {
        match error {
            BusError::Payload(error) => HandlerError::Poison(error.to_string()),
            BusError::Db(error) => error.into(),
            BusError::Connect(_)
            | BusError::Broker(_)
            | BusError::Timeout
            | BusError::Nacked
            | BusError::Closed => HandlerError::Transient(error.to_string()),
            BusError::Unroutable(_) => HandlerError::Failed(error.to_string()),
        }
    }
}

/// How long a transient failure waits before the next try: doubling from `first`
/// up to `max`, for as long as it takes.
#[derive(Debug, Clone, Copy)]
pub struct RetryDelays {
    pub first: std::time::Duration,
    pub max: std::time::Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        Self {
            first: std::time::Duration::from_millis(200),
            max: std::time::Duration::from_secs(10),
        }
    }
}

#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Applies the message inside `transaction` (the inbox row is in it too).
    async fn handle(
        &self,
        transaction: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError>;

    /// After a message's transaction committed: a handler that wrote outbox rows
    /// wakes its service's relay here, so they leave now rather than at its next
    /// poll.
    fn committed(&self) {}
}

enum Outcome {
    Processed,
    Duplicate,
}

async fn process(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &dyn MessageHandler,
    envelope: &Envelope,
) -> Result<Outcome, HandlerError> {
    // The inbox keys on the id: without one, a message would pass as a repeat of
    // the first other message that had none.
    if envelope.message_id.trim().is_empty() {
        return Err(HandlerError::Poison("message has no message_id".to_owned()));
    }
    let transaction = db.begin().await?;
    let seen = inbox::ActiveModel {
        consumer: Set(consumer.to_owned()),
        message_id: Set(envelope.message_id.clone()),
        processed_at: Set(Utc::now()),
    };
    if let Err(error) = inbox::Entity::insert(seen)
        .exec_without_returning(&transaction)
        .await
    {
        transaction.rollback().await?;
        return if is_unique_violation(&error) {
            Ok(Outcome::Duplicate)
        } else {
            Err(error.into())
        };
    }
    handler.handle(&transaction, envelope).await?;
    match transaction.commit().await {
        Ok(()) => {
            handler.committed();
            Ok(Outcome::Processed)
        }
        // Another consumer processed the same message concurrently and won.
        Err(error) if is_unique_violation(&error) => Ok(Outcome::Duplicate),
        Err(error) => Err(error.into()),
    }
}

/// The `crm.message.outcome` label of a handled delivery.
fn outcome_label(result: &Result<Outcome, HandlerError>) -> &'static str {
    match result {
        Ok(Outcome::Processed) => "processed",
        Ok(Outcome::Duplicate) => "duplicate",
        Err(HandlerError::Poison(_)) => "dead_lettered",
        Err(HandlerError::Transient(_)) => "requeued",
        Err(HandlerError::Failed(_)) => "failed",
    }
}

async fn settle(delivery: Delivery, result: Result<Outcome, HandlerError>) {
    let settled = match result {
        Ok(Outcome::Processed) => delivery.ack().await,
        Ok(Outcome::Duplicate) => {
            tracing::debug!("duplicate message acknowledged without effect");
            delivery.ack().await
        }
        Err(HandlerError::Poison(reason)) => {
            tracing::error!(%reason, "poison message dead-lettered");
            delivery.nack(false).await
        }
        // Reached only when shutting down mid-retry: another consumer takes it.
        Err(HandlerError::Transient(reason)) => {
            tracing::warn!(%reason, "message returned to the queue at shutdown");
            delivery.nack(true).await
        }
        Err(HandlerError::Failed(reason)) => {
            tracing::warn!(%reason, "message failed; it will be redelivered");
            // Don't spin on a fault that may need a moment.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            delivery.nack(true).await
        }
    };
    if let Err(error) = settled {
        // The channel went away: the broker redelivers, the inbox absorbs it.
        tracing::warn!(%error, "could not settle delivery");
    }
}

/// How long a consumer remembers a message it processed. Longer than any
/// redelivery or dead-letter replay waits in practice; a replay after that is
/// applied again, which every handler tolerates (copies only take newer news,
/// audit lines are stored once by their own id).
pub const KEEP_INBOX_FOR: chrono::Duration = chrono::Duration::days(14);

/// Inbox rows pruned per pass, and how often a consumer prunes.
const PRUNE_BATCH: u64 = 5_000;
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Deletes up to a batch of `consumer`'s inbox rows for messages older than
/// `keep_for`; how many. Message ids are UUIDv7, ordered by when the message was
/// written: the primary key (consumer, message_id) finds the old rows without
/// reading the rest.
pub async fn prune_inbox(
    db: &DatabaseConnection,
    consumer: &str,
    keep_for: chrono::Duration,
) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};
    let Some(cutoff) = Utc::now().checked_sub_signed(keep_for) else {
        return Ok(0);
    };
    let Ok(millis) = u64::try_from(cutoff.timestamp_millis()) else {
        return Ok(0);
    };
    let first_kept = uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10])
        .into_uuid()
        .to_string();
    let oldest = inbox::Entity::find()
        .select_only()
        .column(inbox::Column::MessageId)
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(inbox::Column::MessageId.lt(first_kept))
        .order_by_asc(inbox::Column::MessageId)
        .limit(PRUNE_BATCH)
        .into_query();
    let deleted = inbox::Entity::delete_many()
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(inbox::Column::MessageId.in_subquery(oldest))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// Processes one delivery, retrying transient failures in place until they pass,
/// the failure turns out to be of another kind, or the process shuts down.
async fn process_retrying(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &dyn MessageHandler,
    envelope: &Envelope,
    delays: RetryDelays,
    shutdown: &CancellationToken,
) -> Result<Outcome, HandlerError> {
    let attempt = || process(db, consumer, handler, envelope);
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(delays.first)
                .with_max_delay(delays.max)
                .without_max_times(),
        )
        .sleep(tokio::time::sleep)
        .when(|error| matches!(error, HandlerError::Transient(_)) && !shutdown.is_cancelled())
        .notify(|error, delay| {
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "transient failure; retrying");
        })
        .await
}

/// How a consumer takes its queue: how many deliveries the broker may hand it
/// ahead of its work, and how many of those already in hand it commits in one
/// transaction. A batch spends one commit (one fsync) on many messages; a handler
/// whose locks other work waits on (routing's branch locks) takes one at a time,
/// so no request waits for a batch.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub prefetch: u16,
    pub batch: usize,
}

impl Pace {
    pub const fn one_at_a_time(prefetch: u16) -> Self {
        Self { prefetch, batch: 1 }
    }

    pub const fn batched(prefetch: u16, batch: usize) -> Self {
        Self { prefetch, batch }
    }
}

/// Consumes `service`'s queue with `handler` until `shutdown`.
pub async fn run_consumer(
    bus: Bus,
    db: DatabaseConnection,
    service: &'static str,
    handler: Arc<dyn MessageHandler>,
    pace: Pace,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    run_consumer_with(
        bus,
        db,
        service,
        handler,
        pace,
        RetryDelays::default(),
        shutdown,
    )
    .await
}

/// [`run_consumer`] with its own retry delays (tests use short ones).
pub async fn run_consumer_with(
    bus: Bus,
    db: DatabaseConnection,
    service: &'static str,
    handler: Arc<dyn MessageHandler>,
    pace: Pace,
    delays: RetryDelays,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let consumer = Consumer {
        name: format!("{service}-consumer"),
        queue: bus.topology().service_queue(service),
        bus,
        db,
        handler,
        delays,
        shutdown,
    };
    let mut subscription = consumer.bus.consume(service, pace.prefetch).await?;
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            _ = consumer.shutdown.cancelled() => break,
            _ = prune.tick() => {
                consumer.prune().await;
                continue;
            }
            batch = subscription.next_batch(pace.batch) => batch,
        };
        let Some(deliveries) = event else { break };
        // Finish the messages in hand even when shutdown arrives meanwhile:
        // drained, not dropped.
        if deliveries.len() == 1 {
            for delivery in deliveries {
                consumer.take_one(delivery).await;
            }
        } else {
            consumer.take_batch(deliveries).await;
        }
    }
    tracing::info!(consumer = %consumer.name, "consumer stopped");
    Ok(())
}

/// One consumer of a service queue and what it needs to take a delivery.
struct Consumer {
    bus: Bus,
    db: DatabaseConnection,
    name: String,
    queue: String,
    handler: Arc<dyn MessageHandler>,
    delays: RetryDelays,
    shutdown: CancellationToken,
}

impl Consumer {
    async fn prune(&self) {
        match prune_inbox(&self.db, &self.name, KEEP_INBOX_FOR).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(consumer = %self.name, pruned, "inbox pruned"),
            Err(error) => tracing::warn!(%error, "could not prune the inbox"),
        }
    }

    /// The span of one message's handling, continuing the trace it carries.
    fn message_span(&self, delivery: &Delivery) -> tracing::Span {
        // OpenTelemetry's messaging conventions: "process <what>", consumer kind.
        let span = tracing::info_span!(
            "message",
            otel.name = %format_args!("process {}", delivery.envelope.message_type),
            otel.kind = "consumer",
            messaging.system = self.bus.system(),
            messaging.operation.name = "process",
            messaging.operation.type = "process",
            messaging.destination.name = %self.queue,
            messaging.consumer.group.name = %self.name,
            messaging.message.id = %delivery.envelope.message_id,
            messaging.rabbitmq.destination.routing_key = %delivery.envelope.routing_key,
            crm.message.type = %delivery.envelope.message_type,
            crm.message.redelivered = delivery.redelivered,
        );
        if let Some(traceparent) = &delivery.envelope.traceparent {
            crm_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        span
    }

    /// One delivery in its own transaction, transient failures retried in place.
    async fn take_one(&self, delivery: Delivery) {
        let span = self.message_span(&delivery);
        async {
            let started = std::time::Instant::now();
            let result = process_retrying(
                &self.db,
                &self.name,
                self.handler.as_ref(),
                &delivery.envelope,
                self.delays,
                &self.shutdown,
            )
            .await;
            self.settle_counted(delivery, result, started).await;
        }
        .instrument(span)
        .await;
    }

    /// Several deliveries in one transaction, acked after its commit. When the
    /// batch fails as a whole (a poison message in it, a deadlock, the database
    /// gone) nothing of it stands, and each message is taken alone, where its
    /// failure is classified and retried or dead-lettered by itself.
    async fn take_batch(&self, deliveries: Vec<Delivery>) {
        let started = std::time::Instant::now();
        // A message without an id, or a second copy of one already in the batch
        // (a publish repeated after a lost confirm), goes alone after the batch:
        // the inbox then tells it apart.
        let mut ids = std::collections::HashSet::new();
        let (batch, alone): (Vec<Delivery>, Vec<Delivery>) =
            deliveries.into_iter().partition(|delivery| {
                let id = delivery.envelope.message_id.trim();
                !id.is_empty() && ids.insert(id.to_owned())
            });
        let span = tracing::info_span!(
            "message batch",
            messaging.system = self.bus.system(),
            messaging.destination.name = %self.queue,
            messaging.consumer.group.name = %self.name,
            messaging.batch.message_count = batch.len(),
        );
        match self.commit_batch(&batch).instrument(span).await {
            Ok(outcomes) => {
                self.handler.committed();
                for (delivery, outcome) in batch.into_iter().zip(outcomes) {
                    self.settle_counted(delivery, Ok(outcome), started).await;
                }
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    messages = batch.len(),
                    consumer = %self.name,
                    "batch failed; taking its messages one by one"
                );
                for delivery in batch {
                    self.take_one(delivery).await;
                }
            }
        }
        for delivery in alone {
            self.take_one(delivery).await;
        }
    }

    /// Records every message of `batch` in the inbox and applies those it did not
    /// hold already, all in one transaction; each message's outcome, in order.
    async fn commit_batch(&self, batch: &[Delivery]) -> Result<Vec<Outcome>, HandlerError> {
        use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
        let transaction = self.db.begin().await?;
        let ids = batch
            .iter()
            .map(|delivery| delivery.envelope.message_id.clone());
        let seen: std::collections::HashSet<String> = inbox::Entity::find()
            .select_only()
            .column(inbox::Column::MessageId)
            .filter(inbox::Column::Consumer.eq(&self.name))
            .filter(inbox::Column::MessageId.is_in(ids))
            .into_tuple::<String>()
            .all(&transaction)
            .await?
            .into_iter()
            .collect();
        let now = Utc::now();
        let fresh: Vec<inbox::ActiveModel> = batch
            .iter()
            .filter(|delivery| !seen.contains(&delivery.envelope.message_id))
            .map(|delivery| inbox::ActiveModel {
                consumer: Set(self.name.clone()),
                message_id: Set(delivery.envelope.message_id.clone()),
                processed_at: Set(now),
            })
            .collect();
        if !fresh.is_empty() {
            // Another consumer holding one of these ids fails the batch here or
            // at the commit; taken alone, each then finds its id.
            inbox::Entity::insert_many(fresh)
                .exec_without_returning(&transaction)
                .await?;
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            if seen.contains(&delivery.envelope.message_id) {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            self.handler
                .handle(&transaction, &delivery.envelope)
                .instrument(self.message_span(delivery))
                .await?;
            outcomes.push(Outcome::Processed);
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    async fn settle_counted(
        &self,
        delivery: Delivery,
        result: Result<Outcome, HandlerError>,
        started: std::time::Instant,
    ) {
        crate::metrics::record_consumed(
            self.bus.system(),
            &self.name,
            delivery.redelivered,
            outcome_label(&result),
            started.elapsed(),
        );
        settle(delivery, result).await;
    }
}
