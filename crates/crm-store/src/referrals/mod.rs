//! Tables of the referrals service: referrals, RM work items, and the local
//! projections of directory and coverage data that routing reads.

pub mod lifecycle_migration;
pub mod migration;
pub mod referral;
pub mod referral_history;
pub mod request_key_migration;
pub mod routing_branch;
pub mod routing_branch_migration;
pub mod routing_client;
pub mod routing_pair;
pub mod routing_staff;
pub mod work_item;
