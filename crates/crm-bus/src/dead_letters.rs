//! The dead-letter queue `crm.dead`: messages a consumer rejected as poison or that
//! failed past the delivery limit. Operators look at them and, once the cause is
//! fixed, replay them to the exchange under their original routing key; consumers'
//! inboxes (and the core-banking feed's ledger of event ids) make a replay of
//! something already processed harmless. A message of an outside feed goes back to
//! its feed's exchange, as it was published.

use crate::Envelope;

/// One dead-lettered message and, where the broker says, why it died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub envelope: Envelope,
    /// `rejected`, `delivery_limit`, `expired`, … (RabbitMQ's `x-first-death-reason`).
    pub reason: Option<String>,
    /// The queue it died in.
    pub queue: Option<String>,
    /// The outside feed's exchange it came from (`corebank.events`); None for the
    /// suite's own messages.
    pub feed_exchange: Option<String>,
}
