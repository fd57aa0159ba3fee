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
