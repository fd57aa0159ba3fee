//! Pure domain logic of the RM CRM suite: parsed ids, money, roles, tiers, the
//! referral routing chain, SLA deadlines and input validation. No I/O lives here, so
//! every rule can be unit-tested without a database or broker.

#[macro_use]
mod text_enum;

pub mod campaign;
pub mod client;
pub mod client_access;
pub mod ids;
pub mod messages;
pub mod money;
pub mod pii;
pub mod referral;
pub mod role;
pub mod routing;
pub mod sla;
pub mod tier;
pub mod validation;

pub use ids::{BranchId, ClientId, StaffId};
pub use money::Money;
pub use role::Role;
pub use validation::Violations;
