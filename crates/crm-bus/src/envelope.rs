use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BusError;

/// One message and what every message carries (ARCHITECTURE.md): `message_id`
/// (UUIDv7), `type`, `occurred_at`, schema version and W3C `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub message_id: String,
    pub message_type: String,
    pub routing_key: String,
    pub occurred_at: DateTime<Utc>,
    pub schema_version: i32,
    pub traceparent: Option<String>,
    /// JSON.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// A new message of `message_type` with the current trace context.
    /// AMQP carries a routing key as a short string: at most 255 bytes. Both
    /// transports refuse a longer one the same way, before anything is sent.
    pub fn check_routing_key(&self) -> Result<(), BusError> {
        if self.routing_key.len() > 255 {
            return Err(BusError::Broker(format!(
                "routing key of {} bytes; AMQP allows 255",
                self.routing_key.len()
            )));
        }
        Ok(())
    }

    pub fn new<T: Serialize>(
        message_type: &str,
        routing_key: &str,
        payload: &T,
    ) -> Result<Self, BusError> {
        Ok(Self {
            message_id: uuid::Uuid::now_v7().to_string(),
            message_type: message_type.to_owned(),
            routing_key: routing_key.to_owned(),
            occurred_at: Utc::now(),
            schema_version: 1,
            traceparent: crm_telemetry::current_traceparent(),
            payload: serde_json::to_vec(payload)?,
        })
    }

    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }
}
