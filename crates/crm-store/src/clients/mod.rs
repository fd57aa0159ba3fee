//! Tables of the clients service: the directory (branches, staff, teller pairs) and
//! the client book.

pub mod branch;
pub mod client;
pub mod migration;
pub mod staff;
pub mod teller_pair;
