//! A service's copy of another service's data, fed by its messages. Each copy keeps
//! the source's `updated_at` and takes only news at least as new, so out-of-order
//! or redelivered messages can't roll a copy back.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait};

/// Inserts the copy, or replaces `columns` unless what is stored is newer than the
/// news. The condition is part of the one statement (`ON CONFLICT … DO UPDATE …
/// WHERE stored <= news`): two replicas applying an older and a newer message at
/// once can't both read "older" and then write, since the database judges the row
/// as it is when the write lands.
pub async fn save_if_newer<E, A>(
    connection: &impl ConnectionTrait,
    row: A,
    key: E::Column,
    columns: &[E::Column],
    source_updated_at: E::Column,
) -> Result<(), DbErr>
where
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E> + Send,
{
    let stored = Expr::col((E::default(), source_updated_at));
    let news = Expr::col((Alias::new("excluded"), source_updated_at));
    E::insert(row)
        .on_conflict(
            OnConflict::column(key)
                .update_columns(columns.iter().copied())
                .action_and_where(stored.lte(news))
                .to_owned(),
        )
        .exec_without_returning(connection)
        .await?;
    Ok(())
}
