//! Opening a database from a URL, with the settings every service wants.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};

/// The database handle every service shares (cheap to clone: a pool).
pub type Db = DatabaseConnection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] DbErr),
    #[error("bad database url: {0}")]
    BadUrl(String),
}

/// Which SQL dialect a connection speaks; the few queries that differ ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub fn of(connection: &impl ConnectionTrait) -> Dialect {
        match connection.get_database_backend() {
            DbBackend::Sqlite => Dialect::Sqlite,
            _ => Dialect::Postgres,
        }
    }
}

/// Opens `url` (`postgres://…` or `sqlite://…`). With `schema`, PostgreSQL work
/// happens in that schema (created if missing): one per service in the distributed
/// mode, one per test in the test suite.
pub async fn connect(url: &str, schema: Option<&str>) -> Result<Db, StoreError> {
    let is_sqlite = url.starts_with("sqlite:");
    if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(StoreError::BadUrl(
            "expected postgres://… or sqlite://…".to_owned(),
        ));
    }
    if let (false, Some(schema)) = (is_sqlite, schema) {
        if !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::BadUrl(format!(
                "schema name {schema:?} must be [a-z0-9_]"
            )));
        }
        let admin = Database::connect(
            quiet(ConnectOptions::new(url))
                .max_connections(1)
                .to_owned(),
        )
        .await?;
        // A service's role owns its schema and has no right to create schemas: only
        // ask for one where it is missing (CREATE SCHEMA IF NOT EXISTS checks that
        // right before it checks existence).
        let exists = admin
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                [schema.into()],
            ))
            .await?
            .is_some();
        if !exists {
            admin
                .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        admin.close().await?;
    }
    let mut options = quiet(ConnectOptions::new(url));
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // A ping at every checkout costs a round trip per query (STACK.md trap 8).
        .test_before_acquire(false);
    if is_sqlite {
        // One writer at a time is SQLite's nature; a single connection turns
        // "database is locked" races into a queue.
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(16).min_connections(1);
        if let Some(schema) = schema {
            options.set_schema_search_path(schema.to_owned());
        }
    }
    let db = Database::connect(options).await?;
    if is_sqlite {
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .await?;
    }
    Ok(db)
}

/// sqlx logs every statement with its parameters at INFO: PII would reach the logs.
fn quiet(mut options: ConnectOptions) -> ConnectOptions {
    options.sqlx_logging(false);
    options
}

/// Drops a schema made by [`connect`] for a test.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    let admin = Database::connect(
        quiet(ConnectOptions::new(url))
            .max_connections(1)
            .to_owned(),
    )
    .await?;
    admin
        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    admin.close().await?;
    Ok(())
}

/// True when `error` is a unique-key violation (a concurrent insert won the race).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// True when the database could not be reached (answer `UNAVAILABLE`, retry later),
/// as opposed to a statement that failed.
pub fn is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(inner) | DbErr::Query(inner) => {
            let text = inner.to_string().to_ascii_lowercase();
            text.contains("connection")
                || text.contains("io error")
                || text.contains("pool timed out")
        }
        _ => false,
    }
}
