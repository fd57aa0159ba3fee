//! Consumers with manual acks and the inbox: process and record the message id in
//! one transaction, then ack. A redelivered message finds its id and has no second
//! effect; a message that keeps failing is dead-lettered by the delivery limit.

use std::sync::Arc;

use chrono::Utc;
use crm_store::bus::inbox;
use crm_store::db::is_unique_violation;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait, TransactionTrait,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Bus, BusError, Delivery, Envelope, SubscriptionEvent};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message can never be processed (bad payload): dead-letter it now.
    #[error("poison message: {0}")]
    Poison(String),
    /// Worth another try (database down, a race): redeliver it.
    #[error("transient failure: {0}")]
    Transient(String),
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(error: sea_orm::DbErr) -> Self {
        HandlerError::Transient(error.to_string())
    }
}

impl From<BusError> for HandlerError {
    fn from(error: BusError) -> Self {
        match error {
            BusError::Payload(error) => HandlerError::Poison(error.to_string()),
            other => HandlerError::Transient(other.to_string()),
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
        Ok(()) => Ok(Outcome::Processed),
        // Another consumer processed the same message concurrently and won.
        Err(error) if is_unique_violation(&error) => Ok(Outcome::Duplicate),
        Err(error) => Err(error.into()),
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
        Err(HandlerError::Transient(reason)) => {
            tracing::warn!(%reason, "message failed; it will be redelivered");
            // Don't spin on a dependency that is down.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            delivery.nack(true).await
        }
    };
    if let Err(error) = settled {
        // The channel went away: the broker redelivers, the inbox absorbs it.
        tracing::warn!(%error, "could not settle delivery");
    }
}

/// Consumes `service`'s queue with `handler` until `shutdown`.
pub async fn run_consumer(
    bus: Bus,
    db: DatabaseConnection,
    service: &'static str,
    handler: Arc<dyn MessageHandler>,
    prefetch: u16,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let consumer_name = format!("{service}-consumer");
    let mut subscription = bus.consume(service, prefetch).await?;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = subscription.next() => event,
        };
        let delivery = match event {
            Some(SubscriptionEvent::Message(delivery)) => *delivery,
            Some(SubscriptionEvent::Reconnected) => continue,
            None => break,
        };
        let span = tracing::info_span!(
            "message",
            consumer = %consumer_name,
            message_type = %delivery.envelope.message_type,
            message_id = %delivery.envelope.message_id,
            redelivered = delivery.redelivered,
            otel.kind = "consumer",
        );
        if let Some(traceparent) = &delivery.envelope.traceparent {
            crm_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        // Finish the message in hand even when shutdown arrives meanwhile: drained,
        // not dropped.
        async {
            let result = process(&db, &consumer_name, handler.as_ref(), &delivery.envelope).await;
            settle(delivery, result).await;
        }
        .instrument(span)
        .await;
    }
    tracing::info!(consumer = %consumer_name, "consumer stopped");
    Ok(())
}
