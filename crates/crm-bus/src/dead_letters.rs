//! The dead-letter queue `crm.dead`: messages a consumer rejected as poison or that
//! failed past the delivery limit. Operators look at them and, once the cause is
//! fixed, replay them to the exchange under their original routing key; consumers'
//! inboxes make a replay of something already processed harmless.

use crate::Envelope;

/// One dead-lettered message and, where the broker says, why it died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub envelope: Envelope,
    /// `rejected`, `delivery_limit`, `expired`, … (RabbitMQ's `x-first-death-reason`).
    pub reason: Option<String>,
    /// The queue it died in.
    pub queue: Option<String>,
}
