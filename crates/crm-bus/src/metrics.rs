//! What the relay and the consumers record, by OpenTelemetry's messaging
//! conventions: publish latency and messages sent (with `error.type` when the
//! broker refused or was away), deliveries consumed, redeliveries, handler latency
//! and outcome (dead-lettered among them).

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

struct Instruments {
    publish_duration: Histogram<f64>,
    sent: Counter<u64>,
    process_duration: Histogram<f64>,
    consumed: Counter<u64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = crm_telemetry::meter();
    Instruments {
        publish_duration: meter
            .f64_histogram("messaging.client.operation.duration")
            .with_unit("s")
            .with_description("Outbox relay: one confirmed publish of a batch")
            .with_boundaries(crm_telemetry::LATENCY_BOUNDARIES_SECONDS.to_vec())
            .build(),
        sent: meter
            .u64_counter("messaging.client.sent.messages")
            .with_description("Outbox rows published (error.type set when the publish failed)")
            .build(),
        process_duration: meter
            .f64_histogram("messaging.process.duration")
            .with_unit("s")
            .with_description("A consumer's handling of one delivery, retries included")
            .with_boundaries(crm_telemetry::LATENCY_BOUNDARIES_SECONDS.to_vec())
            .build(),
        consumed: meter
            .u64_counter("messaging.client.consumed.messages")
            .with_description("Deliveries taken, by consumer, redelivery and outcome")
            .build(),
    }
});

/// What became of a delivery: `processed`, `duplicate` (the inbox had it),
/// `dead_lettered`, `requeued` (shutdown mid-retry) or `failed` (redelivered later).
pub(crate) fn record_consumed(
    system: &'static str,
    consumer: &str,
    redelivered: bool,
    outcome: &'static str,
    took: Duration,
) {
    let labels = [
        KeyValue::new("messaging.system", system),
        KeyValue::new("messaging.consumer.group.name", consumer.to_owned()),
        KeyValue::new("crm.message.outcome", outcome),
    ];
    INSTRUMENTS
        .process_duration
        .record(took.as_secs_f64(), &labels);
    let mut counted = labels.to_vec();
    counted.push(KeyValue::new("crm.message.redelivered", redelivered));
    INSTRUMENTS.consumed.add(1, &counted);
}

/// One publish of `messages` outbox rows of `source`; `error` names the failure.
pub(crate) fn record_published(
    system: &'static str,
    source: &str,
    messages: usize,
    error: Option<&'static str>,
    took: Duration,
) {
    let mut labels = vec![
        KeyValue::new("messaging.system", system),
        KeyValue::new("messaging.operation.name", "publish"),
        KeyValue::new("crm.outbox.source", source.to_owned()),
    ];
    if let Some(error) = error {
        labels.push(KeyValue::new("error.type", error));
    }
    INSTRUMENTS
        .publish_duration
        .record(took.as_secs_f64(), &labels);
    INSTRUMENTS
        .sent
        .add(u64::try_from(messages).unwrap_or(u64::MAX), &labels);
}
