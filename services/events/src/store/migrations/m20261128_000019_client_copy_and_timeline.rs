//! The events service's own copy of each client's coverage and tier (from the
//! client book's messages: it reads no other service's tables), the events held
//! for clients the copy does not have yet, and the client timeline's entries
//! from other services' messages (bank events are read from `bank_events`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000019_client_copy_and_timeline"
    }
}

#[derive(DeriveIden)]
enum EventClients {
    Table,
    ClientId,
    HomeBranchId,
    PrimaryRmId,
    WealthManagerId,
    PrivateBankerId,
    DoNotContact,
    SourceUpdatedAt,
}

#[derive(DeriveIden)]
enum EventClientTiers {
    Table,
    ClientId,
    Tier,
    SourceUpdatedAt,
}

#[derive(DeriveIden)]
enum HeldEvents {
    Table,
    EventId,
    ClientId,
    OccurredAt,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum BankEventIds {
    Table,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum TimelineEntries {
    Table,
    TimelineId,
    ClientId,
    EntryKind,
    EntryId,
    Title,
    Detail,
    OccurredAt,
}

fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string().not_null().to_owned()
}

fn optional_text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string().null().to_owned()
}

fn instant(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventClients::Table)
                    .if_not_exists()
                    .col(text(EventClients::ClientId).primary_key())
                    .col(text(EventClients::HomeBranchId))
                    .col(optional_text(EventClients::PrimaryRmId))
                    .col(optional_text(EventClients::WealthManagerId))
                    .col(optional_text(EventClients::PrivateBankerId))
                    .col(
                        ColumnDef::new(EventClients::DoNotContact)
                            .boolean()
                            .not_null(),
                    )
                    .col(instant(EventClients::SourceUpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventClientTiers::Table)
                    .if_not_exists()
                    .col(text(EventClientTiers::ClientId).primary_key())
                    .col(text(EventClientTiers::Tier))
                    .col(instant(EventClientTiers::SourceUpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HeldEvents::Table)
                    .if_not_exists()
                    .col(text(HeldEvents::EventId).primary_key())
                    .col(text(HeldEvents::ClientId))
                    .col(instant(HeldEvents::OccurredAt))
                    .col(instant(HeldEvents::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_held_events_client")
                    .table(HeldEvents::Table)
                    .col(HeldEvents::ClientId)
                    .col(HeldEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_held_events_received")
                    .table(HeldEvents::Table)
                    .col(HeldEvents::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TimelineEntries::Table)
                    .if_not_exists()
                    .col(text(TimelineEntries::TimelineId).primary_key())
                    .col(text(TimelineEntries::ClientId))
                    .col(text(TimelineEntries::EntryKind))
                    .col(text(TimelineEntries::EntryId))
                    .col(text(TimelineEntries::Title))
                    .col(ColumnDef::new(TimelineEntries::Detail).text().not_null())
                    .col(instant(TimelineEntries::OccurredAt))
                    .to_owned(),
            )
            .await?;
        // When the feed last delivered (`crm jobs feed-watch`): an index lookup.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_bank_event_ids_received")
                    .table(BankEventIds::Table)
                    .col(BankEventIds::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        // A page of one client's timeline, newest first, is a walk down this index.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_timeline_entries_client")
                    .table(TimelineEntries::Table)
                    .col(TimelineEntries::ClientId)
                    .col(TimelineEntries::OccurredAt)
                    .col(TimelineEntries::TimelineId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .if_exists()
                    .name("idx_bank_event_ids_received")
                    .table(BankEventIds::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            EventClients::Table.into_iden(),
            EventClientTiers::Table.into_iden(),
            HeldEvents::Table.into_iden(),
            TimelineEntries::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
