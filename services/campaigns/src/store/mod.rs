//! Tables of the campaigns service (only it reads or writes them): its
//! projection of the client book for audiences, campaigns and their tasks, and
//! what the league tables count.

pub mod branch_target;
pub mod campaign;
pub mod campaign_client;
pub mod campaign_task;
pub mod league_funds_kept;
pub mod league_referral;
pub mod league_tier_crossing;

mod migrations {
    pub mod m20261128_000025_campaigns;
}

use sea_orm_migration::MigrationTrait;

/// This service's migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(migrations::m20261128_000025_campaigns::Migration)]
}
