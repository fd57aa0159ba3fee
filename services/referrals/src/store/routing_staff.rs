use crm_domain::Role;
use sea_orm::entity::prelude::*;

/// The referrals service's copy of a staff member, fed by `directory.staff_changed`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "routing_staff")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub staff_id: String,
    pub role: Role,
    pub branch_id: String,
    pub active: bool,
    pub capacity: i32,
    pub out_of_office_until: Option<DateTimeUtc>,
    /// When routing last gave this person a referral (ties in the pool go to the idlest).
    pub last_assigned_at: Option<DateTimeUtc>,
    /// Open referrals held now: kept by the referral changes themselves.
    pub open_referrals: i32,
    /// The directory's `updated_at` of the copy: older events are ignored.
    pub source_updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
