//! Tables of the referrals service: referrals, RM work items, and the local
//! projections of directory and coverage data that routing reads. Only this service
//! reads or writes them.

pub mod referral;
pub mod referral_history;
pub mod routing_branch;
pub mod routing_client;
pub mod routing_pair;
pub mod routing_staff;
pub mod work_item;
pub mod work_request;

mod migrations {
    pub mod m20261126_000003_create_referrals;
    pub mod m20261126_000005_referral_lifecycle;
    pub mod m20261127_000007_referral_request_key;
    pub mod m20261127_000008_branch_calendars_and_expiry;
    pub mod m20261128_000012_work_requests;
    pub mod m20261128_000020_work_item_funds_outcome;
    pub mod m20261128_000022_work_item_task_outcome;
    pub mod m20261207_000030_work_item_resume_index;
}

use migrations::m20261126_000005_referral_lifecycle as lifecycle_migration;
use sea_orm_migration::MigrationTrait;

/// This service's migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(migrations::m20261126_000003_create_referrals::Migration),
        Box::new(migrations::m20261126_000005_referral_lifecycle::Migration),
        Box::new(migrations::m20261127_000007_referral_request_key::Migration),
        Box::new(migrations::m20261127_000008_branch_calendars_and_expiry::Migration),
        Box::new(migrations::m20261128_000012_work_requests::Migration),
        Box::new(migrations::m20261128_000020_work_item_funds_outcome::Migration),
        Box::new(migrations::m20261128_000022_work_item_task_outcome::Migration),
        Box::new(migrations::m20261207_000030_work_item_resume_index::Migration),
    ]
}

/// Sets every RM's open-referral counter from the referrals themselves: after a
/// restore that lost routing's copy of the staff, or to check the counters. Run
/// it with the referrals service stopped: a referral routed meanwhile may be
/// missed by the count. Returns how many staff rows it set.
pub async fn recount_open_referrals(
    db: &impl sea_orm::ConnectionTrait,
) -> Result<u64, sea_orm::DbErr> {
    Ok(db
        .execute_unprepared(lifecycle_migration::COUNT_OPEN_REFERRALS)
        .await?
        .rows_affected())
}
