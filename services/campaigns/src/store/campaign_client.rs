use sea_orm::entity::prelude::*;

/// A client as audiences see it, from the client book's `client.profiles_changed`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign_clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub home_branch_id: String,
    pub tier: String,
    /// 0 mass, 1 wealth, 2 HNW, 3 private: `tier_min` is a comparison.
    pub tier_rank: i32,
    pub aum_minor: i64,
    pub currency: String,
    /// `,a,b,` (empty: `,`), so one LIKE finds a segment.
    #[sea_orm(column_type = "Text")]
    pub segments: String,
    pub primary_rm_id: Option<String>,
    pub do_not_contact: bool,
    pub marketing_consent: bool,
    pub last_contact_at: Option<DateTimeUtc>,
    pub next_tier_at_minor: Option<i64>,
    pub source_updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
