use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000002_create_directory_and_clients"
    }
}

#[derive(DeriveIden)]
enum Branches {
    Table,
    BranchId,
    Name,
    City,
    TimeZone,
    CreatedAt,
    UpdatedAt,
}

// The column names are the iden names; `StaffId` in `Staff` is what the table says.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Staff {
    Table,
    StaffId,
    Name,
    Role,
    BranchId,
    Active,
    Capacity,
    OutOfOfficeUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TellerPairs {
    Table,
    PairId,
    TellerId,
    RmId,
    ValidFrom,
    ValidUntil,
    Active,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    FullName,
    NationalId,
    Phone,
    HomeBranchId,
    Kind,
    Segments,
    DoNotContact,
    Tier,
    AumMinorUnits,
    AumCurrency,
    PrimaryRmId,
    WealthManagerId,
    PrivateBankerId,
    LastContactAt,
    CreatedAt,
    UpdatedAt,
}

fn timestamps<T: IntoIden>(table: &mut TableCreateStatement, created: T, updated: T) {
    table
        .col(
            ColumnDef::new(created)
                .timestamp_with_time_zone()
                .not_null(),
        )
        .col(
            ColumnDef::new(updated)
                .timestamp_with_time_zone()
                .not_null(),
        );
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut branches = Table::create();
        branches
            .table(Branches::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Branches::BranchId)
                    .string()
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Branches::Name).string().not_null())
            .col(ColumnDef::new(Branches::City).string().not_null())
            .col(ColumnDef::new(Branches::TimeZone).string().not_null());
        timestamps(&mut branches, Branches::CreatedAt, Branches::UpdatedAt);
        manager.create_table(branches).await?;

        let mut staff = Table::create();
        staff
            .table(Staff::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Staff::StaffId)
                    .string()
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Staff::Name).string().not_null())
            .col(ColumnDef::new(Staff::Role).string().not_null())
            .col(ColumnDef::new(Staff::BranchId).string().not_null())
            .col(ColumnDef::new(Staff::Active).boolean().not_null())
            .col(ColumnDef::new(Staff::Capacity).integer().not_null())
            .col(ColumnDef::new(Staff::OutOfOfficeUntil).timestamp_with_time_zone());
        timestamps(&mut staff, Staff::CreatedAt, Staff::UpdatedAt);
        manager.create_table(staff).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_staff_branch_role")
                    .table(Staff::Table)
                    .col(Staff::BranchId)
                    .col(Staff::Role)
                    .col(Staff::StaffId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TellerPairs::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(TellerPairs::PairId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(TellerPairs::TellerId).string().not_null())
                    .col(ColumnDef::new(TellerPairs::RmId).string().not_null())
                    .col(ColumnDef::new(TellerPairs::ValidFrom).date().not_null())
                    .col(ColumnDef::new(TellerPairs::ValidUntil).date())
                    .col(ColumnDef::new(TellerPairs::Active).boolean().not_null())
                    .col(
                        ColumnDef::new(TellerPairs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_teller_pairs_teller")
                    .table(TellerPairs::Table)
                    .col(TellerPairs::TellerId)
                    .col(TellerPairs::Active)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        let mut clients = Table::create();
        clients
            .table(Clients::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Clients::ClientId)
                    .string()
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Clients::FullName).string().not_null())
            .col(ColumnDef::new(Clients::NationalId).string().not_null())
            .col(ColumnDef::new(Clients::Phone).string().not_null())
            .col(ColumnDef::new(Clients::HomeBranchId).string().not_null())
            .col(ColumnDef::new(Clients::Kind).string().not_null())
            .col(ColumnDef::new(Clients::Segments).text().not_null())
            .col(ColumnDef::new(Clients::DoNotContact).boolean().not_null())
            .col(ColumnDef::new(Clients::Tier).string().not_null())
            .col(
                ColumnDef::new(Clients::AumMinorUnits)
                    .big_integer()
                    .not_null(),
            )
            .col(ColumnDef::new(Clients::AumCurrency).string().not_null())
            .col(ColumnDef::new(Clients::PrimaryRmId).string())
            .col(ColumnDef::new(Clients::WealthManagerId).string())
            .col(ColumnDef::new(Clients::PrivateBankerId).string())
            .col(ColumnDef::new(Clients::LastContactAt).timestamp_with_time_zone());
        timestamps(&mut clients, Clients::CreatedAt, Clients::UpdatedAt);
        manager.create_table(clients).await?;
        for (name, column) in [
            ("idx_clients_home_branch", Clients::HomeBranchId),
            ("idx_clients_primary_rm", Clients::PrimaryRmId),
            ("idx_clients_phone", Clients::Phone),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Clients::Table)
                        .col(column)
                        .col(Clients::ClientId)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Clients::Table.into_iden(),
            TellerPairs::Table.into_iden(),
            Staff::Table.into_iden(),
            Branches::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
