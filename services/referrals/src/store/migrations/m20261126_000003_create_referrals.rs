use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000003_create_referrals"
    }
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    ReferralId,
    IdempotencyKey,
    ClientId,
    ProspectName,
    ProspectPhone,
    ReferrerId,
    BranchId,
    Need,
    Note,
    AmountMinorUnits,
    AmountCurrency,
    Priority,
    Status,
    AssignedRmId,
    RoutingReason,
    RoutingDecision,
    SlaDueAt,
    Escalated,
    Outcome,
    OutcomeProduct,
    OutcomeAmountMinorUnits,
    AcceptedAt,
    AssignedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkItems {
    Table,
    WorkItemId,
    RmId,
    Kind,
    ClientId,
    Title,
    Detail,
    Priority,
    DueAt,
    State,
    SourceId,
    AckedAt,
    SnoozedUntil,
    Outcome,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RoutingStaff {
    Table,
    StaffId,
    Role,
    BranchId,
    Active,
    Capacity,
    OutOfOfficeUntil,
    LastAssignedAt,
    SourceUpdatedAt,
}

#[derive(DeriveIden)]
enum RoutingPairs {
    Table,
    TellerId,
    RmId,
    ValidFrom,
    ValidUntil,
    SourceUpdatedAt,
}

#[derive(DeriveIden)]
enum RoutingClients {
    Table,
    ClientId,
    HomeBranchId,
    PrimaryRmId,
    WealthManagerId,
    PrivateBankerId,
    DoNotContact,
    SourceUpdatedAt,
}

fn index(
    name: &str,
    table: impl IntoIden,
    columns: Vec<DynIden>,
    unique: bool,
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tz = |c: Referrals| {
            ColumnDef::new(c)
                .timestamp_with_time_zone()
                .not_null()
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(Referrals::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Referrals::ReferralId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Referrals::IdempotencyKey)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Referrals::ClientId).string())
                    .col(ColumnDef::new(Referrals::ProspectName).string())
                    .col(ColumnDef::new(Referrals::ProspectPhone).string())
                    .col(ColumnDef::new(Referrals::ReferrerId).string().not_null())
                    .col(ColumnDef::new(Referrals::BranchId).string().not_null())
                    .col(ColumnDef::new(Referrals::Need).string().not_null())
                    .col(ColumnDef::new(Referrals::Note).text().not_null())
                    .col(ColumnDef::new(Referrals::AmountMinorUnits).big_integer())
                    .col(ColumnDef::new(Referrals::AmountCurrency).string())
                    .col(ColumnDef::new(Referrals::Priority).string().not_null())
                    .col(ColumnDef::new(Referrals::Status).string().not_null())
                    .col(ColumnDef::new(Referrals::AssignedRmId).string().not_null())
                    .col(ColumnDef::new(Referrals::RoutingReason).string().not_null())
                    .col(ColumnDef::new(Referrals::RoutingDecision).text().not_null())
                    .col(tz(Referrals::SlaDueAt))
                    .col(ColumnDef::new(Referrals::Escalated).boolean().not_null())
                    .col(ColumnDef::new(Referrals::Outcome).string())
                    .col(ColumnDef::new(Referrals::OutcomeProduct).string())
                    .col(ColumnDef::new(Referrals::OutcomeAmountMinorUnits).big_integer())
                    .col(ColumnDef::new(Referrals::AcceptedAt).timestamp_with_time_zone())
                    .col(tz(Referrals::AssignedAt))
                    .col(tz(Referrals::CreatedAt))
                    .col(tz(Referrals::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index(
                "idx_referrals_idempotency",
                Referrals::Table,
                vec![
                    Referrals::ReferrerId.into_iden(),
                    Referrals::IdempotencyKey.into_iden(),
                ],
                true,
            ),
            index(
                "idx_referrals_rm_status",
                Referrals::Table,
                vec![
                    Referrals::AssignedRmId.into_iden(),
                    Referrals::Status.into_iden(),
                ],
                false,
            ),
            index(
                "idx_referrals_client_need",
                Referrals::Table,
                vec![Referrals::ClientId.into_iden(), Referrals::Need.into_iden()],
                false,
            ),
            index(
                "idx_referrals_referrer",
                Referrals::Table,
                vec![
                    Referrals::ReferrerId.into_iden(),
                    Referrals::ReferralId.into_iden(),
                ],
                false,
            ),
        ] {
            manager.create_index(statement).await?;
        }

        let wtz = |c: WorkItems| ColumnDef::new(c).timestamp_with_time_zone().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(WorkItems::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WorkItems::WorkItemId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WorkItems::RmId).string().not_null())
                    .col(ColumnDef::new(WorkItems::Kind).string().not_null())
                    .col(ColumnDef::new(WorkItems::ClientId).string())
                    .col(ColumnDef::new(WorkItems::Title).string().not_null())
                    .col(ColumnDef::new(WorkItems::Detail).text().not_null())
                    .col(ColumnDef::new(WorkItems::Priority).string().not_null())
                    .col(wtz(WorkItems::DueAt))
                    .col(ColumnDef::new(WorkItems::State).string().not_null())
                    .col(ColumnDef::new(WorkItems::SourceId).string().not_null())
                    .col(wtz(WorkItems::AckedAt))
                    .col(wtz(WorkItems::SnoozedUntil))
                    .col(ColumnDef::new(WorkItems::Outcome).string())
                    .col(ColumnDef::new(WorkItems::Version).big_integer().not_null())
                    .col(wtz(WorkItems::CreatedAt).not_null())
                    .col(wtz(WorkItems::UpdatedAt).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_work_items_rm_state",
                WorkItems::Table,
                vec![
                    WorkItems::RmId.into_iden(),
                    WorkItems::State.into_iden(),
                    WorkItems::WorkItemId.into_iden(),
                ],
                false,
            ))
            .await?;
        // One item per RM, kind and source: a retried write cannot queue work twice.
        manager
            .create_index(index(
                "idx_work_items_source",
                WorkItems::Table,
                vec![
                    WorkItems::SourceId.into_iden(),
                    WorkItems::Kind.into_iden(),
                    WorkItems::RmId.into_iden(),
                ],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoutingStaff::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoutingStaff::StaffId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RoutingStaff::Role).string().not_null())
                    .col(ColumnDef::new(RoutingStaff::BranchId).string().not_null())
                    .col(ColumnDef::new(RoutingStaff::Active).boolean().not_null())
                    .col(ColumnDef::new(RoutingStaff::Capacity).integer().not_null())
                    .col(ColumnDef::new(RoutingStaff::OutOfOfficeUntil).timestamp_with_time_zone())
                    .col(ColumnDef::new(RoutingStaff::LastAssignedAt).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(RoutingStaff::SourceUpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_routing_staff_branch",
                RoutingStaff::Table,
                vec![
                    RoutingStaff::BranchId.into_iden(),
                    RoutingStaff::Role.into_iden(),
                ],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoutingPairs::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoutingPairs::TellerId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RoutingPairs::RmId).string().not_null())
                    .col(ColumnDef::new(RoutingPairs::ValidFrom).date().not_null())
                    .col(ColumnDef::new(RoutingPairs::ValidUntil).date())
                    .col(
                        ColumnDef::new(RoutingPairs::SourceUpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoutingClients::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoutingClients::ClientId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RoutingClients::HomeBranchId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RoutingClients::PrimaryRmId).string())
                    .col(ColumnDef::new(RoutingClients::WealthManagerId).string())
                    .col(ColumnDef::new(RoutingClients::PrivateBankerId).string())
                    .col(
                        ColumnDef::new(RoutingClients::DoNotContact)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RoutingClients::SourceUpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RoutingClients::Table.into_iden(),
            RoutingPairs::Table.into_iden(),
            RoutingStaff::Table.into_iden(),
            WorkItems::Table.into_iden(),
            Referrals::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
