//! Rewriting every row of a table in place, a page at a time, while the service
//! keeps serving: each page is its own transaction, its rows locked on PostgreSQL
//! so that a writer of the same row waits for the page rather than being
//! overwritten by it (SQLite has one writer at a time anyway). Used by the
//! maintenance jobs that seal PII again after a key rotation.

use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, TransactionTrait,
};

use crate::{Db, Dialect};

/// Rows per transaction: short enough that a locked row is not held for long.
pub const PAGE: u64 = 500;

/// The rows a select picks, in the order of a unique text column, a page at a
/// time. The caller rewrites a page's rows in its transaction and commits it:
///
/// ```ignore
/// let mut pages = LockedPages::new(client::Entity::find(), client::Column::ClientId, |row| row.client_id.clone());
/// while let Some((transaction, rows)) = pages.next(db).await? { …; transaction.commit().await?; }
/// ```
pub struct LockedPages<E: EntityTrait> {
    select: Select<E>,
    key: E::Column,
    key_of: fn(&E::Model) -> String,
    after: String,
    finished: bool,
    read: u64,
}

impl<E: EntityTrait> LockedPages<E> {
    pub fn new(select: Select<E>, key: E::Column, key_of: fn(&E::Model) -> String) -> Self {
        LockedPages {
            select,
            key,
            key_of,
            after: String::new(),
            finished: false,
            read: 0,
        }
    }

    /// The next page with the transaction that holds its locks; None once every
    /// row was handed out.
    pub async fn next(
        &mut self,
        db: &Db,
    ) -> Result<Option<(DatabaseTransaction, Vec<E::Model>)>, DbErr> {
        if self.finished {
            return Ok(None);
        }
        let transaction = db.begin().await?;
        let mut page = self
            .select
            .clone()
            .filter(self.key.gt(self.after.as_str()))
            .order_by_asc(self.key)
            .limit(PAGE);
        if Dialect::of(db) == Dialect::Postgres {
            page = page.lock_exclusive();
        }
        let rows = page.all(&transaction).await?;
        self.finished = (rows.len() as u64) < PAGE;
        let Some(last) = rows.last() else {
            transaction.commit().await?;
            return Ok(None);
        };
        self.after = (self.key_of)(last);
        self.read += rows.len() as u64;
        Ok(Some((transaction, rows)))
    }

    /// Rows handed out so far.
    pub fn read(&self) -> u64 {
        self.read
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;
    use sea_orm::{ConnectOptions, ConnectionTrait, Database};

    mod row {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "rows")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            pub even: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    #[tokio::test]
    async fn every_picked_row_is_handed_out_once_across_pages() {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1);
        let db = Database::connect(options).await.unwrap();
        db.execute_unprepared(
            "CREATE TABLE rows (id TEXT PRIMARY KEY, even BOOLEAN NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2199)
             INSERT INTO rows SELECT printf('r%05d', i), i % 2 = 0 FROM n;",
        )
        .await
        .unwrap();

        // 1,100 even rows: two full pages and a part.
        let mut pages = LockedPages::new(
            row::Entity::find().filter(row::Column::Even.eq(true)),
            row::Column::Id,
            |row| row.id.clone(),
        );
        let (mut seen, mut page_sizes) = (Vec::new(), Vec::new());
        while let Some((transaction, rows)) = pages.next(&db).await.unwrap() {
            page_sizes.push(rows.len());
            seen.extend(rows.into_iter().map(|row| row.id));
            transaction.commit().await.unwrap();
        }
        assert_eq!(page_sizes, [500, 500, 100]);
        assert_eq!(pages.read(), 1100);
        let expected: Vec<String> = (0..2200).step_by(2).map(|i| format!("r{i:05}")).collect();
        assert_eq!(seen, expected);
        assert!(pages.next(&db).await.unwrap().is_none(), "stays finished");
    }
}
