use crm_domain::client::ClientKind;
use crm_domain::tier::Tier;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub full_name: String,
    /// Sealed by [`crm_store::Vault`]; never clear text.
    pub national_id: String,
    /// Sealed by [`crm_store::Vault`]; never clear text.
    pub phone: String,
    /// Keyed lookup hash of the national id, for exact search.
    pub national_id_hash: String,
    /// Keyed lookup hash of the phone number, for exact search.
    pub phone_hash: String,
    pub home_branch_id: String,
    /// `individual` or `corporate`.
    pub kind: ClientKind,
    /// JSON array of segment names, as shown; `client_segments` is what searches use.
    #[sea_orm(column_type = "Text")]
    pub segments: String,
    pub do_not_contact: bool,
    /// False: left out of every campaign audience, like `do_not_contact`.
    pub marketing_consent: bool,
    /// The tier's text (`mass`, `wealth`, `hnw`, `private`).
    pub tier: Tier,
    pub aum_minor_units: i64,
    pub aum_currency: String,
    /// When the balance feed last set the average (`None`: it never has, and
    /// core banking's UpsertClient still sets it).
    pub aum_feed_updated_at: Option<DateTimeUtc>,
    /// Who pays the client's salary through the bank (`client.payroll_detected`);
    /// such a client keeps the `payroll` segment.
    pub payroll_employer_id: Option<String>,
    pub primary_rm_id: Option<String>,
    pub wealth_manager_id: Option<String>,
    pub private_banker_id: Option<String>,
    pub last_contact_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
