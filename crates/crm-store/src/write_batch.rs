//! Writes that belong together in one transaction, sent together.
//!
//! On PostgreSQL the batch goes as one statement — a `WITH` of data-modifying
//! statements — so five rows cost one round trip instead of five. That matters
//! where a lock is held until commit (routing holds its branch's): the lock is
//! held for the writes' round trips, and under load each one is a scheduling
//! slice on a busy machine. Elsewhere (SQLite, in-process) the statements run one
//! after another on the same connection, with the same effect.
//!
//! The statements of one batch see the same snapshot and not each other's rows,
//! so a batch must not write one row twice or read what another statement writes.

use sea_orm::sea_query::{
    Alias, CommonTableExpression, InsertStatement, SubQueryStatement, UpdateStatement, WithClause,
};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait};

enum Write {
    Insert(InsertStatement),
    Update(UpdateStatement),
}

impl From<Write> for SubQueryStatement {
    fn from(write: Write) -> Self {
        match write {
            Write::Insert(statement) => SubQueryStatement::InsertStatement(statement),
            Write::Update(statement) => SubQueryStatement::UpdateStatement(statement),
        }
    }
}

#[derive(Default)]
pub struct WriteBatch(Vec<Write>);

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the insert of one row.
    pub fn insert<A>(&mut self, row: A) -> &mut Self
    where
        A: ActiveModelTrait,
    {
        self.insert_statement(<A::Entity as EntityTrait>::insert(row).into_query())
    }

    /// Adds the insert of several rows of one table, as one statement.
    pub fn insert_many<A>(&mut self, rows: impl IntoIterator<Item = A>) -> &mut Self
    where
        A: ActiveModelTrait,
    {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            // No rows, no statement: an INSERT without values is not SQL.
            return self;
        }
        self.insert_statement(<A::Entity as EntityTrait>::insert_many(rows).into_query())
    }

    pub fn insert_statement(&mut self, statement: InsertStatement) -> &mut Self {
        self.0.push(Write::Insert(statement));
        self
    }

    pub fn update(&mut self, statement: UpdateStatement) -> &mut Self {
        self.0.push(Write::Update(statement));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs every statement, in the caller's transaction.
    pub async fn execute(self, connection: &impl ConnectionTrait) -> Result<(), DbErr> {
        let backend = connection.get_database_backend();
        let mut statements = self.0;
        match backend {
            DbBackend::Postgres if statements.len() > 1 => {
                let Some(last) = statements.pop() else {
                    return Ok(());
                };
                let mut with = WithClause::new();
                for (n, statement) in statements.into_iter().enumerate() {
                    with.cte(
                        CommonTableExpression::new()
                            .query(SubQueryStatement::from(statement))
                            .table_name(Alias::new(format!("write_{n}")))
                            .to_owned(),
                    );
                }
                connection
                    .execute(&with.query(SubQueryStatement::from(last)))
                    .await?;
            }
            _ => {
                for statement in statements {
                    match statement {
                        Write::Insert(statement) => connection.execute(&statement).await?,
                        Write::Update(statement) => connection.execute(&statement).await?,
                    };
                }
            }
        }
        Ok(())
    }
}
