//! Messaging between the services, with the delivery guarantees of ARCHITECTURE.md:
//!
//! - [`outbox`]: a message row written in the state change's own transaction; the
//!   [`outbox::Relay`] claims rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
//!   publishes them with publisher confirms and marks them sent only after the broker
//!   confirmed, in the claiming transaction.
//! - [`consumer`]: manual acks, explicit prefetch, and the inbox: a message's id is
//!   recorded in the consumer's transaction, so a redelivery has no second effect.
//! - Two transports with the same semantics: RabbitMQ ([`rabbit`]) and in-process
//!   ([`memory`]) for the embedded default.

pub mod consumer;
mod dead_letters;
mod envelope;
mod error;
mod live_hub;
pub mod memory;
mod metrics;
pub mod outbox;
pub mod rabbit;
mod topic;
mod topology;
mod transport;

pub use consumer::{
    HandlerError, KEEP_INBOX_FOR, MessageHandler, Pace, RetryDelays, prune_inbox, run_consumer,
    run_consumer_with,
};
pub use dead_letters::DeadLetter;
pub use envelope::Envelope;
pub use error::BusError;
pub use topology::{ServiceQueue, Topology, rm_routing_key};
pub use transport::{Bus, BusConfig, Delivery, Subscription, SubscriptionEvent};
