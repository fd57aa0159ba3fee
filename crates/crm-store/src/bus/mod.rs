//! The messaging tables every service has: its outbox and its inbox.

pub mod inbox;
pub mod migration;
pub mod outbox;
pub mod pending_index_migration;
