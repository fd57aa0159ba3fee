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
