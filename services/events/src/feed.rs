//! The core-banking feed: core banking publishes each event as one message to the
//! exchange `corebank.events` (declared by the suite), as protobuf
//! (`content-type: application/x-protobuf`) or as its proto3 JSON mapping
//! (`application/json`); the README gives the format to integration teams.
//!
//! Deliveries are taken in batches: whatever the prefetch window holds, up to a
//! batch, goes through the same path as IngestEvents in one transaction and is
//! acked after it commits, so a redelivery finds its event ids taken. A message
//! that can never be taken (undecodable, or an event IngestEvents would reject)
//! is dead-lettered with its reason and the rest of the batch goes on; a batch
//! the database fails for a moment is retried in place; a batch that fails
//! otherwise is taken one message at a time, so one bad message can't hold up
//! the feed.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use crm_bus::{Bus, BusError, Delivery, HandlerError};
use crm_proto::v1 as pb;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ingest::{BankEvent, Intake};

/// The outside exchange core banking publishes to.
pub const FEED: &str = "corebank.events";
/// Deliveries taken in one transaction, at most.
pub const BATCH: u16 = 500;
/// Batches in flight at once: while one waits on the database, the next is
/// checked and written (one client's snapshots still go one batch at a time, by
/// its lock). The prefetch covers them all.
pub const PARALLEL_BATCHES: u16 = 4;

const PROTOBUF: &[&str] = &["application/x-protobuf", "application/protobuf"];
const JSON: &str = "application/json";

/// A delivery's event, or why it can't be one.
fn decode(delivery: &Delivery) -> Result<pb::BankEvent, String> {
    let content_type = delivery.content_type.as_deref().unwrap_or_default();
    // `application/json; charset=utf-8` is JSON too.
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let payload = &delivery.envelope.payload;
    if PROTOBUF.contains(&media_type.as_str()) {
        pb::BankEvent::decode(payload.as_slice())
            .map_err(|error| format!("protobuf payload is not a crm.v1.BankEvent: {error}"))
    } else if media_type == JSON {
        crm_proto::json::decode("crm.v1.BankEvent", payload)
            .map_err(|error| format!("JSON payload is not a crm.v1.BankEvent: {error}"))
    } else {
        Err(format!(
            "content-type must be {JSON} or {}, got {content_type:?}",
            PROTOBUF[0]
        ))
    }
}

/// Consumes the feed until `shutdown`.
pub struct FeedConsumer {
    pub bus: Bus,
    pub db: crm_store::Db,
    pub partitions: std::sync::Arc<crate::partitions::Partitions>,
    pub rules: crate::balance_watch::WatchRules,
    pub retention_months: u32,
    pub outbox: crm_bus::outbox::OutboxWaker,
    pub shutdown: CancellationToken,
}

impl FeedConsumer {
    fn intake(&self) -> Intake<'_> {
        Intake {
            db: &self.db,
            partitions: &self.partitions,
            rules: &self.rules,
            retention_months: self.retention_months,
        }
    }

    fn queue(&self) -> String {
        self.bus.topology().feed_queue(crate::SERVICE, FEED)
    }

    pub async fn run(self) -> Result<(), BusError> {
        let consumer = std::sync::Arc::new(self);
        let mut subscription = consumer
            .bus
            .consume_feed(crate::SERVICE, FEED, BATCH * PARALLEL_BATCHES)
            .await?;
        let in_flight =
            std::sync::Arc::new(tokio::sync::Semaphore::new(usize::from(PARALLEL_BATCHES)));
        let mut batches = tokio::task::JoinSet::new();
        loop {
            let next = tokio::select! {
                _ = consumer.shutdown.cancelled() => break,
                batch = subscription.next_batch(usize::from(BATCH)) => batch,
            };
            let Some(batch) = next else { break };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let span = tracing::info_span!(
                "feed batch",
                feed = FEED,
                messages = batch.len(),
                otel.kind = "consumer",
            );
            let taking = consumer.clone();
            batches.spawn(
                async move {
                    taking.take_batch(batch).await;
                    drop(permit);
                }
                .instrument(span),
            );
            // Reap what finished, so the set doesn't grow with the feed.
            while batches.try_join_next().is_some() {}
        }
        // Drained, not dropped: the batches in hand finish (or go back to the
        // queue) before the consumer stops.
        while batches.join_next().await.is_some() {}
        tracing::info!(feed = FEED, "feed consumer stopped");
        Ok(())
    }

    /// Takes one batch: its bad messages dead-lettered, the rest committed and
    /// acked (or, when the batch fails as a whole, taken one by one).
    async fn take_batch(&self, batch: Vec<Delivery>) {
        let now = chrono::Utc::now();
        let mut good = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        for delivery in batch {
            let checked = decode(&delivery).and_then(|event| {
                match self
                    .intake()
                    .check_all(std::slice::from_ref(&event), now)
                    .pop()
                {
                    Some(Ok(checked)) => Ok(checked),
                    Some(Err(reason)) => Err(format!("event {:?}: {reason}", event.event_id)),
                    None => Err("nothing to check".to_owned()),
                }
            });
            match checked {
                Ok(event) => {
                    events.push(event);
                    good.push(delivery);
                }
                Err(reason) => self.dead_letter(delivery, &reason).await,
            }
        }
        if good.is_empty() {
            return;
        }
        match self.take_retrying(&events).await {
            Ok(()) => {
                record_taken(good.len());
                self.ack_all(good).await;
            }
            // Shutting down mid-retry: returned to the queue for whoever is next.
            Err(HandlerError::Transient(reason)) => {
                tracing::warn!(%reason, "feed batch returned to the queue at shutdown");
                for delivery in good {
                    let _ = delivery.nack(true).await;
                }
            }
            Err(error) if good.len() > 1 => {
                tracing::warn!(%error, "feed batch failed; taking its messages one by one");
                for (delivery, event) in good.into_iter().zip(events) {
                    match self.take_retrying(std::slice::from_ref(&event)).await {
                        Ok(()) => {
                            record_taken(1);
                            self.ack_all(vec![delivery]).await;
                        }
                        Err(HandlerError::Transient(_)) => {
                            let _ = delivery.nack(true).await;
                        }
                        Err(error) => self.dead_letter(delivery, &error.to_string()).await,
                    }
                }
            }
            Err(error) => {
                for delivery in good {
                    self.dead_letter(delivery, &error.to_string()).await;
                }
            }
        }
    }

    /// Takes checked events in one transaction, retrying while the database is
    /// away (holding the deliveries) until it works or the process stops.
    async fn take_retrying(&self, events: &[BankEvent]) -> Result<(), HandlerError> {
        let attempt = || async {
            self.intake()
                .take(events, chrono::Utc::now())
                .await
                .map(drop)
                .map_err(HandlerError::from)
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            .when(|error| {
                matches!(error, HandlerError::Transient(_)) && !self.shutdown.is_cancelled()
            })
            .notify(|error, delay| {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "feed batch failed for a moment; retrying");
            })
            .await?;
        self.outbox.wake();
        Ok(())
    }

    async fn ack_all(&self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            if let Err(error) = delivery.ack().await {
                // The channel went away: the broker redelivers, the ledger of
                // event ids absorbs it.
                tracing::warn!(%error, "could not ack a feed message");
            }
        }
    }

    async fn dead_letter(&self, delivery: Delivery, reason: &str) {
        FEED_METRICS.messages.add(
            1,
            &[opentelemetry::KeyValue::new(
                "crm.message.outcome",
                "dead_lettered",
            )],
        );
        let message_id = delivery.envelope.message_id.clone();
        tracing::error!(%message_id, %reason, "feed message dead-lettered");
        let exchange = self.bus.topology().feed_exchange(FEED);
        if let Err(error) = self
            .bus
            .dead_letter(delivery, &self.queue(), reason, Some(&exchange))
            .await
        {
            // Not acked: the broker redelivers it and it is judged again.
            tracing::warn!(%error, "could not dead-letter a feed message");
        }
    }
}

struct FeedMetrics {
    messages: opentelemetry::metrics::Counter<u64>,
    last_taken: opentelemetry::metrics::Gauge<f64>,
}

/// The feed as operations watch it: messages taken or dead-lettered, and when the
/// last event was taken (the silent-feed alert reads how long ago that was).
static FEED_METRICS: std::sync::LazyLock<FeedMetrics> = std::sync::LazyLock::new(|| {
    let meter = crm_telemetry::meter();
    FeedMetrics {
        messages: meter
            .u64_counter("crm.events.feed.messages")
            .with_description("Core-banking feed messages, taken or dead-lettered")
            .build(),
        last_taken: meter
            .f64_gauge("crm.events.feed.last_event_timestamp")
            .with_unit("s")
            .with_description("When the last core-banking event was taken (Unix time)")
            .build(),
    }
});

fn record_taken(messages: usize) {
    FEED_METRICS.messages.add(
        u64::try_from(messages).unwrap_or(u64::MAX),
        &[opentelemetry::KeyValue::new(
            "crm.message.outcome",
            "processed",
        )],
    );
    #[allow(clippy::cast_precision_loss)] // Unix milliseconds: exact in f64 for ages
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    FEED_METRICS.last_taken.record(now, &[]);
}
