//! The transactional outbox and its relay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use crm_store::Dialect;
use crm_store::bus::outbox;
use sea_orm::sea_query::{ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, Envelope};

/// The outbox row that will carry `envelope` from `source`.
pub fn row(source: &str, envelope: &Envelope) -> outbox::ActiveModel {
    outbox::ActiveModel {
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
        parked_at: Set(None),
    }
}

/// The outbox row of a new message of `message_type` with `payload`, carrying the
/// current trace context: for callers that write it with others in one batch.
pub fn event_row<T: serde::Serialize>(
    source: &str,
    message_type: &str,
    routing_key: &str,
    payload: &T,
) -> Result<outbox::ActiveModel, BusError> {
    let envelope = Envelope::new(message_type, routing_key, payload)?;
    Ok(row(source, &envelope))
}

/// Writes `envelope` into the outbox of `source`, inside the caller's transaction.
pub async fn enqueue(
    connection: &impl ConnectionTrait,
    source: &str,
    envelope: &Envelope,
) -> Result<(), sea_orm::DbErr> {
    outbox::Entity::insert(row(source, envelope))
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
    outbox::Entity::insert(event_row(source, message_type, routing_key, payload)?)
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Sent rows deleted per prune, and how often (in scans, one per poll interval
/// when idle): 5,000 every ~5 s keeps up with a day of 1,000 messages/s peaks.
const PRUNE_BATCH: u64 = 5_000;
const PRUNE_EVERY_SCANS: u64 = 10;

/// Failed passes of a row before the relay tries the rows of its batch one by one,
/// to tell a row that can't be published from a broker that is away.
pub const ISOLATE_AFTER_ATTEMPTS: i32 = 5;

/// Ids a waker holds for the relay at most (a few seconds of peak load).
const MAX_NAMED_ROWS: usize = 100_000;

/// Tells the relay about a commit, so a message doesn't wait for the next poll.
///
/// A caller that knows the ids of the rows it committed hands them over: the relay
/// then reads those rows by primary key. Without ids, the relay scans for unsent
/// rows — cheap while the outbox is small, but every row sent since the last
/// vacuum is a dead index entry that a scan walks past, so the busy paths say
/// which rows they wrote. Ids of rows that were rolled back are harmless: no row,
/// nothing sent.
#[derive(Clone, Default)]
pub struct OutboxWaker(Arc<WakerState>);

#[derive(Default)]
struct WakerState {
    notify: Notify,
    committed: Mutex<Vec<String>>,
    scan_requested: AtomicBool,
}

impl OutboxWaker {
    /// After a commit that wrote outbox rows: the relay scans for them.
    pub fn wake(&self) {
        self.0.scan_requested.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }

    /// After a commit that wrote the outbox rows `message_ids`.
    pub fn committed(&self, message_ids: impl IntoIterator<Item = String>) {
        match self.0.committed.lock() {
            // Nobody draining the list (no relay running, or one stuck on the
            // broker): stop collecting; the rows are found by a scan instead.
            Ok(committed) if committed.len() >= MAX_NAMED_ROWS => {
                self.0.scan_requested.store(true, Ordering::Release);
            }
            Ok(mut committed) => committed.extend(message_ids),
            // A poisoned list still has a relay behind it that scans.
            Err(_) => self.0.scan_requested.store(true, Ordering::Release),
        }
        self.0.notify.notify_one();
    }

    fn take_committed(&self) -> Vec<String> {
        match self.0.committed.lock() {
            Ok(mut committed) => std::mem::take(&mut *committed),
            Err(_) => Vec::new(),
        }
    }

    fn take_scan_request(&self) -> bool {
        self.0.scan_requested.swap(false, Ordering::AcqRel)
    }
}

/// The rows `ids`, by primary key alone: a condition the unsent-rows index also
/// answers tempts the planner into walking that index, past every dead entry
/// (tests/tests/outbox_and_plans.rs). The caller drops rows already sent.
pub fn rows_by_id(ids: &[String]) -> sea_orm::Select<outbox::Entity> {
    outbox::Entity::find().filter(outbox::Column::MessageId.is_in(ids.iter().map(String::as_str)))
}

/// Which unsent rows a relay pass reads.
enum Pick<'a> {
    /// The oldest unsent rows of the source, up to a batch.
    Oldest,
    /// These rows, if they are still unsent.
    Ids(&'a [String]),
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

    /// Claims up to a batch of the oldest unsent rows, publishes them with
    /// confirms, marks them sent, commits. Returns how many were sent. On any error
    /// nothing is marked sent, and the rows are published again on the next pass.
    pub async fn relay_once(&self) -> Result<usize, BusError> {
        self.relay(Pick::Oldest).await
    }

    /// [`Self::relay_once`] for the rows a caller said it committed.
    async fn relay_committed(&self, ids: &[String]) -> Result<usize, BusError> {
        let mut sent = 0;
        for chunk in ids.chunks(usize::try_from(self.batch_size).unwrap_or(200).max(1)) {
            sent += self.relay(Pick::Ids(chunk)).await?;
        }
        Ok(sent)
    }

    async fn relay(&self, pick: Pick<'_>) -> Result<usize, BusError> {
        // PostgreSQL: replicas share the outbox, so rows are claimed (SKIP LOCKED)
        // in a transaction held across the publish. SQLite: one process, one
        // connection — read the rows and let the connection go before publishing,
        // for the in-process consumers that settle the publish need it to commit.
        let postgres = Dialect::of(&self.db) == Dialect::Postgres;
        let claim = if postgres {
            Some(self.db.begin().await?)
        } else {
            None
        };
        let mut query = match pick {
            Pick::Oldest => outbox::Entity::find()
                .filter(outbox::Column::Source.eq(self.source.as_str()))
                .filter(outbox::Column::SentAt.is_null())
                .filter(outbox::Column::ParkedAt.is_null())
                .order_by_asc(outbox::Column::MessageId)
                .limit(self.batch_size),
            Pick::Ids(ids) => rows_by_id(ids),
        };
        if postgres {
            // Replicas share the outbox: each claims rows no other relay holds.
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let mut rows = match &claim {
            Some(transaction) => query.all(transaction).await?,
            None => query.all(&self.db).await?,
        };
        rows.retain(|row| {
            row.sent_at.is_none() && row.parked_at.is_none() && row.source == self.source
        });
        rows.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        if rows.is_empty() {
            if let Some(transaction) = claim {
                transaction.commit().await?;
            }
            return Ok(0);
        }
        let mut envelopes: Vec<Envelope> = rows
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
        // Ended (dropped) once the broker confirmed, or refused, the batch.
        let _publish_spans = publish_spans(&self.bus, &mut envelopes);
        let started = std::time::Instant::now();
        let mut published = self.bus.publish_and_await_consumers(&envelopes).await;
        if let Err(BusError::Unroutable(routing_key)) = &published {
            // A queue deleted under a live connection (by hand, or lost with a
            // node): declare the topology again and try once more, rather than
            // fail every mandatory publish until a reconnect.
            tracing::warn!(%routing_key, "unroutable; declaring the topology again");
            if let Err(error) = self.bus.redeclare_topology().await {
                tracing::warn!(%error, "could not declare the topology again");
            }
            published = self.bus.publish_and_await_consumers(&envelopes).await;
        }
        crate::metrics::record_published(
            self.bus.system(),
            &self.source,
            envelopes.len(),
            published.as_ref().err().map(BusError::kind),
            started.elapsed(),
        );
        if let Err(error) = published {
            let stuck = rows.len() > 1
                && rows
                    .iter()
                    .any(|row| row.attempts + 1 >= ISOLATE_AFTER_ATTEMPTS);
            if stuck {
                return self.publish_one_by_one(claim, &rows, &envelopes).await;
            }
            if let Some(transaction) = claim {
                transaction.rollback().await?;
            }
            self.record_failure(&ids, &error).await;
            return Err(error);
        }
        let transaction = match claim {
            Some(transaction) => transaction,
            None => self.db.begin().await?,
        };
        mark_sent(&transaction, ids).await?;
        transaction.commit().await?;
        tracing::debug!(source = %self.source, sent = rows.len(), "outbox relayed");
        Ok(rows.len())
    }

    /// A batch keeps failing: publish its rows one at a time, in order. A row that
    /// fails alone while others of the pass go out can't be published as it is:
    /// it is set aside with its reason, so the outbox behind it moves again. If
    /// nothing goes out, the broker is the trouble and nothing is set aside.
    async fn publish_one_by_one(
        &self,
        claim: Option<sea_orm::DatabaseTransaction>,
        rows: &[outbox::Model],
        envelopes: &[Envelope],
    ) -> Result<usize, BusError> {
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        let mut last_sent = None;
        for (position, (row, envelope)) in rows.iter().zip(envelopes).enumerate() {
            let published = self
                .bus
                .publish_and_await_consumers(std::slice::from_ref(envelope))
                .await;
            match published {
                Ok(()) => {
                    sent.push(row.message_id.clone());
                    last_sent = Some(position);
                }
                Err(error) => failed.push((position, row, error)),
            }
        }
        let transaction = match claim {
            Some(transaction) => transaction,
            None => self.db.begin().await?,
        };
        let sent_count = sent.len();
        if !sent.is_empty() {
            mark_sent(&transaction, sent).await?;
        }
        for (position, row, error) in &failed {
            // The row's own fault only when a row after it went out (a broker that
            // went away mid-pass fails every row after the last one sent), and the
            // error is not the broker's being away.
            let broker_away = matches!(
                error,
                BusError::Connect(_) | BusError::Timeout | BusError::Closed | BusError::Db(_)
            );
            let park = last_sent.is_some_and(|last| last > *position)
                && !broker_away
                && row.attempts + 1 >= ISOLATE_AFTER_ATTEMPTS;
            let mut update = outbox::Entity::update_many()
                .col_expr(
                    outbox::Column::Attempts,
                    sea_orm::sea_query::Expr::col(outbox::Column::Attempts).add(1),
                )
                .col_expr(outbox::Column::LastError, Some(error.to_string()).into())
                .filter(outbox::Column::MessageId.eq(row.message_id.as_str()));
            if park {
                tracing::error!(
                    message_id = %row.message_id,
                    message_type = %row.message_type,
                    %error,
                    "outbox row set aside: it fails alone while others go out"
                );
                update = update.col_expr(outbox::Column::ParkedAt, Some(Utc::now()).into());
            }
            update.exec(&transaction).await?;
        }
        transaction.commit().await?;
        match failed.into_iter().next() {
            Some((_, _, error)) if sent_count == 0 => Err(error),
            _ => Ok(sent_count),
        }
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

    /// Deletes up to a batch of the oldest rows sent before `keep_sent_for`.
    /// Message ids are UUIDv7, ordered as they were written: the primary key finds
    /// the old rows without reading the rest of the table.
    async fn delete_old_sent(&self) {
        let cutoff = Utc::now() - self.keep_sent_for;
        let Ok(millis) = u64::try_from(cutoff.timestamp_millis()) else {
            return;
        };
        let first_kept = uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10])
            .into_uuid()
            .to_string();
        let oldest_sent = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::MessageId)
            .filter(outbox::Column::MessageId.lt(first_kept))
            .filter(outbox::Column::Source.eq(self.source.as_str()))
            .filter(outbox::Column::SentAt.is_not_null())
            .order_by_asc(outbox::Column::MessageId)
            .limit(PRUNE_BATCH)
            .into_query();
        let result = outbox::Entity::delete_many()
            .filter(outbox::Column::MessageId.in_subquery(oldest_sent))
            .exec(&self.db)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "could not prune sent outbox rows");
        }
    }

    /// Relays until `shutdown`, then drains what is pending (once) and returns.
    ///
    /// Rows a caller named are relayed as soon as it commits; a scan for any
    /// unsent row runs when asked, after a full batch, after a failure (with
    /// backoff), and every `poll_interval` — which is what finds rows written by
    /// another replica, left by a crash, or committed without a wake.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut passes: u64 = 0;
        let mut next_scan = tokio::time::Instant::now();
        loop {
            let committed = self.waker.take_committed();
            let scan_requested = self.waker.take_scan_request();
            let mut result = Ok(0);
            if !committed.is_empty() && failures == 0 {
                result = self.relay_committed(&committed).await;
            }
            let now = tokio::time::Instant::now();
            let scan = scan_requested || now >= next_scan || result.is_err() || failures > 0;
            if scan {
                result = self.relay_once().await;
                next_scan = now + self.poll_interval;
                passes += 1;
                if passes % PRUNE_EVERY_SCANS == 1 {
                    self.delete_old_sent().await;
                }
            }
            let wait = match result {
                Ok(sent) if scan && sent as u64 >= self.batch_size => {
                    // More may be waiting: scan again at once.
                    failures = 0;
                    next_scan = tokio::time::Instant::now();
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    next_scan.saturating_duration_since(tokio::time::Instant::now())
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
                _ = self.waker.0.notify.notified(), if failures == 0 => {}
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

async fn mark_sent(
    transaction: &sea_orm::DatabaseTransaction,
    ids: Vec<String>,
) -> Result<(), sea_orm::DbErr> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::SentAt, Utc::now().into())
        .filter(outbox::Column::MessageId.is_in(ids))
        .exec(transaction)
        .await?;
    Ok(())
}

/// Rows set aside, oldest first, with why (`crm outbox parked`).
pub async fn parked(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<outbox::Model>, sea_orm::DbErr> {
    outbox::Entity::find()
        .filter(outbox::Column::ParkedAt.is_not_null())
        .filter(outbox::Column::SentAt.is_null())
        .order_by_asc(outbox::Column::MessageId)
        .limit(limit)
        .all(db)
        .await
}

/// Returns rows set aside to the relay (`crm outbox retry`): those named, or
/// every one when none is named. How many.
pub async fn retry_parked(
    db: &impl ConnectionTrait,
    message_ids: &[String],
) -> Result<u64, sea_orm::DbErr> {
    let mut update = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::ParkedAt,
            Option::<chrono::DateTime<Utc>>::None.into(),
        )
        .col_expr(outbox::Column::Attempts, 0.into())
        .filter(outbox::Column::ParkedAt.is_not_null());
    if !message_ids.is_empty() {
        update =
            update.filter(outbox::Column::MessageId.is_in(message_ids.iter().map(String::as_str)));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// A producer span per message that continues a trace (its row carries the
/// writer's `traceparent`), named as OpenTelemetry's messaging conventions say
/// ("publish <what>"); the message then carries the publish span's context, so
/// its consumers' spans are the publish's children.
fn publish_spans(bus: &Bus, envelopes: &mut [Envelope]) -> Vec<tracing::Span> {
    let exchange = bus.topology().exchange();
    envelopes
        .iter_mut()
        .filter_map(|envelope| {
            let writer = envelope.traceparent.as_deref()?;
            let span = tracing::info_span!(
                "publish",
                otel.name = %format_args!("publish {}", envelope.message_type),
                otel.kind = "producer",
                messaging.system = bus.system(),
                messaging.operation.name = "publish",
                messaging.operation.type = "send",
                messaging.destination.name = %exchange,
                messaging.message.id = %envelope.message_id,
                messaging.rabbitmq.destination.routing_key = %envelope.routing_key,
                crm.message.type = %envelope.message_type,
            );
            crm_telemetry::set_parent_from_traceparent(&span, writer);
            if let Some(publishing) = crm_telemetry::traceparent_of(&span) {
                envelope.traceparent = Some(publishing);
            }
            Some(span)
        })
        .collect()
}

/// One service's unsent outbox rows: what the relay still has to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    pub source: String,
    /// Waiting for the relay (not set aside).
    pub pending: i64,
    /// Set aside, waiting for `crm outbox retry`.
    pub parked: i64,
    /// When the oldest pending row was written.
    pub oldest_pending_at: Option<chrono::DateTime<Utc>>,
}

/// The unsent rows per source (the metric `crm_outbox_pending_messages` and
/// friends). Sent rows don't count, so this reads only the relay's few.
pub async fn backlog(db: &impl ConnectionTrait) -> Result<Vec<Backlog>, sea_orm::DbErr> {
    use sea_orm::sea_query::{Expr, Func};
    let pending = Expr::case(outbox::Column::ParkedAt.is_null(), 1).finally(0);
    let parked = Expr::case(outbox::Column::ParkedAt.is_not_null(), 1).finally(0);
    let oldest_pending = Expr::case(
        outbox::Column::ParkedAt.is_null(),
        Expr::col(outbox::Column::OccurredAt),
    );
    /// source, pending, parked, oldest pending.
    type Row = (
        String,
        Option<i64>,
        Option<i64>,
        Option<chrono::DateTime<Utc>>,
    );
    let rows: Vec<Row> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Source)
        .column_as(
            sea_orm::sea_query::SimpleExpr::from(Func::sum(pending)),
            "pending",
        )
        .column_as(
            sea_orm::sea_query::SimpleExpr::from(Func::sum(parked)),
            "parked",
        )
        .column_as(
            sea_orm::sea_query::SimpleExpr::from(Func::min(oldest_pending)),
            "oldest_pending_at",
        )
        .filter(outbox::Column::SentAt.is_null())
        .group_by(outbox::Column::Source)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(source, pending, parked, oldest_pending_at)| Backlog {
            source,
            pending: pending.unwrap_or(0),
            parked: parked.unwrap_or(0),
            oldest_pending_at,
        })
        .collect())
}
