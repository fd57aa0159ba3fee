use sea_orm::entity::prelude::*;

/// One run of a job.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    pub job: String,
    /// `running`, `succeeded`, `failed`, or `skipped` (another run held the lease).
    /// A `running` row whose lease is gone is a run that crashed.
    pub outcome: String,
    /// The host and process that ran it.
    pub holder: String,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// What it did, in its own words (counts).
    #[sea_orm(column_type = "Text")]
    pub summary: String,
    #[sea_orm(column_type = "Text")]
    pub error: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
