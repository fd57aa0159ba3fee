//! Tables of the clients service: the directory (branches, staff, teller pairs), the
//! client book (clients, segments, interactions) and the audit trail.

pub mod audit_event;
pub mod book_migration;
pub mod branch;
pub mod client;
pub mod client_segment;
pub mod interaction;
pub mod migration;
pub mod staff;
pub mod teller_pair;
