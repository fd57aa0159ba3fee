//! Steps the services' migrations share.

use sea_orm_migration::prelude::*;

/// Adds `column` to `table` unless it is already there: SQLite runs migrations
/// outside a transaction, so a migration interrupted after this step is run
/// again and must find the column rather than fail on it.
pub async fn add_column_if_missing(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    mut column: ColumnDef,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    let name = column.get_column_name();
    if manager.has_column(&table.to_string(), &name).await? {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(&mut column)
                .to_owned(),
        )
        .await
}

/// Drops `column` from `table` (a migration's `down`).
pub async fn drop_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: impl IntoIden,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).drop_column(column).to_owned())
        .await
}

/// Column definitions the tables of the suite are made of, the same on both
/// databases.
pub mod columns {
    use sea_orm_migration::prelude::*;

    pub fn text(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).string().not_null().to_owned()
    }

    pub fn optional_text(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).string().null().to_owned()
    }

    pub fn long_text(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).text().not_null().to_owned()
    }

    pub fn instant(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column)
            .timestamp_with_time_zone()
            .not_null()
            .to_owned()
    }

    pub fn optional_instant(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column)
            .timestamp_with_time_zone()
            .null()
            .to_owned()
    }

    pub fn number(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).big_integer().not_null().to_owned()
    }

    pub fn optional_number(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).big_integer().null().to_owned()
    }

    pub fn small_number(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).integer().not_null().to_owned()
    }

    pub fn flag(column: impl IntoIden) -> ColumnDef {
        ColumnDef::new(column).boolean().not_null().to_owned()
    }
}
