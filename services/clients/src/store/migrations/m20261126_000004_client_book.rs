//! The client book grows up: personal data sealed with lookup hashes, segments as
//! rows (searchable), the contact log, and the append-only audit trail.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000004_client_book"
    }
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    NationalIdHash,
    PhoneHash,
    WealthManagerId,
    PrivateBankerId,
}

#[derive(DeriveIden)]
enum ClientSegments {
    Table,
    ClientId,
    Segment,
}

#[derive(DeriveIden)]
enum Interactions {
    Table,
    InteractionId,
    ClientId,
    StaffId,
    Channel,
    Summary,
    Outcome,
    OccurredAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    AuditEventId,
    ActorId,
    ActorRole,
    ActorBranchId,
    Action,
    ClientId,
    ClientBranchId,
    Decision,
    Reason,
    ClientIds,
    RequestId,
    OccurredAt,
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    columns: Vec<DynIden>,
) -> Result<(), DbErr> {
    let mut statement = Index::create();
    statement.name(name).table(table).if_not_exists();
    for column in columns {
        statement.col(column);
    }
    manager.create_index(statement.to_owned()).await
}

/// The database refuses to change or remove an audit row, whoever asks.
const APPEND_ONLY_POSTGRES: &str = r#"
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
-- The clients a read of many showed, found by client through a GIN index: one
-- index entry per client, appended to GIN's pending list, costs a search page
-- far less than a btree row per client shown.
CREATE INDEX IF NOT EXISTS idx_audit_events_clients_shown
  ON audit_events USING gin (string_to_array(client_ids, ','));
"#;

const APPEND_ONLY_SQLITE: [&str; 2] = [
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events \
     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events \
     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
];

/// Name-prefix search compares lowercased names on both databases (SQLite's LIKE
/// ignores ASCII case, PostgreSQL's doesn't); this index serves it on PostgreSQL.
const NAME_PREFIX_INDEX_POSTGRES: &str = "CREATE INDEX IF NOT EXISTS idx_clients_full_name_lower \
     ON clients (lower(full_name) text_pattern_ops, client_id)";

/// A teller has at most one active pair, also under concurrent PairTeller calls.
const ONE_ACTIVE_PAIR: &str = "CREATE UNIQUE INDEX IF NOT EXISTS idx_teller_pairs_one_active \
     ON teller_pairs (teller_id) WHERE active";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Values written before this migration were clear text; there are none in
        // production yet, so the columns keep their names and now hold sealed text.
        for column in [Clients::NationalIdHash, Clients::PhoneHash] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .add_column(ColumnDef::new(column).string().not_null().default(""))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_clients_phone")
                    .table(Clients::Table)
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_clients_phone_hash", Clients::PhoneHash),
            ("idx_clients_national_id_hash", Clients::NationalIdHash),
            ("idx_clients_wealth_manager", Clients::WealthManagerId),
            ("idx_clients_private_banker", Clients::PrivateBankerId),
        ] {
            index(
                manager,
                name,
                Clients::Table,
                vec![column.into_iden(), Clients::ClientId.into_iden()],
            )
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ClientSegments::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ClientSegments::ClientId).string().not_null())
                    .col(ColumnDef::new(ClientSegments::Segment).string().not_null())
                    .primary_key(
                        Index::create()
                            .col(ClientSegments::ClientId)
                            .col(ClientSegments::Segment),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_client_segments_segment",
            ClientSegments::Table,
            vec![
                ClientSegments::Segment.into_iden(),
                ClientSegments::ClientId.into_iden(),
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Interactions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Interactions::InteractionId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Interactions::ClientId).string().not_null())
                    .col(ColumnDef::new(Interactions::StaffId).string().not_null())
                    .col(ColumnDef::new(Interactions::Channel).string().not_null())
                    .col(ColumnDef::new(Interactions::Summary).text().not_null())
                    .col(ColumnDef::new(Interactions::Outcome).text().not_null())
                    .col(
                        ColumnDef::new(Interactions::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Interactions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_interactions_client",
            Interactions::Table,
            vec![
                Interactions::ClientId.into_iden(),
                Interactions::InteractionId.into_iden(),
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditEvents::AuditEventId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuditEvents::ActorId).string().not_null())
                    .col(ColumnDef::new(AuditEvents::ActorRole).string().not_null())
                    .col(
                        ColumnDef::new(AuditEvents::ActorBranchId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Action).string().not_null())
                    .col(ColumnDef::new(AuditEvents::ClientId).string().not_null())
                    .col(
                        ColumnDef::new(AuditEvents::ClientBranchId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Decision).string().not_null())
                    .col(ColumnDef::new(AuditEvents::Reason).text().not_null())
                    .col(
                        ColumnDef::new(AuditEvents::ClientIds)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .col(ColumnDef::new(AuditEvents::RequestId).string().not_null())
                    .col(
                        ColumnDef::new(AuditEvents::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_audit_events_client", AuditEvents::ClientId),
            ("idx_audit_events_actor", AuditEvents::ActorId),
        ] {
            index(
                manager,
                name,
                AuditEvents::Table,
                vec![column.into_iden(), AuditEvents::AuditEventId.into_iden()],
            )
            .await?;
        }

        let connection = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                connection.execute_unprepared(APPEND_ONLY_POSTGRES).await?;
                connection
                    .execute_unprepared(NAME_PREFIX_INDEX_POSTGRES)
                    .await?;
            }
            _ => {
                for statement in APPEND_ONLY_SQLITE {
                    connection.execute_unprepared(statement).await?;
                }
            }
        }
        connection.execute_unprepared(ONE_ACTIVE_PAIR).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            Interactions::Table.into_iden(),
            ClientSegments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
