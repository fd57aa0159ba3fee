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

/// A connection of its own beside the pool, for the health checks: they must tell
/// "the database is away" from "every pooled connection is busy". A replica whose
/// pool is busy that left rotation would only send its load to the others, which
/// then leave too. Opened when first used, checked before each use, opened again
/// after a failure. SQLite: the pool itself (its one connection is SQLite's nature).
pub async fn probe(url: &str, schema: Option<&str>, pool: &Db) -> Result<Db, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(pool.clone());
    }
    let mut options = quiet(ConnectOptions::new(url));
    options
        .connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(2))
        .max_connections(1)
        .min_connections(0)
        .test_before_acquire(true)
        .connect_lazy(true);
    if let Some(schema) = schema {
        options.set_schema_search_path(schema.to_owned());
    }
    Ok(Database::connect(options).await?)
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

/// What a database failure means for whoever retries, decided by the error's kind
/// (the driver's error variant, the SQLSTATE or SQLite result code), never by its
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database can't be reached or is restarting: the same work later will do.
    Unavailable,
    /// Lost a race (deadlock, serialization failure, a lock not granted in time,
    /// SQLite busy): the same work again will do.
    Conflict,
    /// The statement can never succeed as it is (a constraint, bad data, a stored
    /// value that doesn't decode).
    Refused,
    /// Anything else; assume a fault of ours.
    Unclassified,
}

impl DbFailure {
    /// True when doing the same work again later is expected to succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, DbFailure::Unavailable | DbFailure::Conflict)
    }
}

pub fn classify(error: &DbErr) -> DbFailure {
    use sea_orm::RuntimeErr;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbFailure::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            classify_sqlx(inner)
        }
        DbErr::Type(_) | DbErr::Json(_) | DbErr::TryIntoErr { .. } | DbErr::RecordNotInserted => {
            DbFailure::Refused
        }
        _ => DbFailure::Unclassified,
    }
}

fn classify_sqlx(error: &sea_orm::sqlx::Error) -> DbFailure {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => DbFailure::Unavailable,
        Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            // PostgreSQL's SQLSTATEs are five characters; SQLite's codes are numbers
            // of at most four digits.
            if code.len() == 5 {
                classify_sqlstate(&code)
            } else {
                classify_sqlite(&code)
            }
        }
        Error::ColumnDecode { .. } | Error::Decode(_) | Error::TypeNotFound { .. } => {
            DbFailure::Refused
        }
        _ => DbFailure::Unclassified,
    }
}

/// PostgreSQL's error codes (appendix A of its manual).
fn classify_sqlstate(code: &str) -> DbFailure {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => DbFailure::Conflict,
        // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped;
        // read_only_sql_transaction: a failover left us on a replica.
        "57P01" | "57P02" | "57P03" | "57P04" | "25006" => DbFailure::Unavailable,
        // connection_exception, insufficient_resources, operator intervention
        _ if code.starts_with("08") || code.starts_with("53") => DbFailure::Unavailable,
        // integrity constraints, data exceptions, syntax or access rule errors
        _ if code.starts_with("23") || code.starts_with("22") || code.starts_with("42") => {
            DbFailure::Refused
        }
        _ => DbFailure::Unclassified,
    }
}

/// SQLite's (extended) result codes: the primary code is the low byte.
fn classify_sqlite(code: &str) -> DbFailure {
    let Ok(extended) = code.parse::<u32>() else {
        return DbFailure::Unclassified;
    };
    match extended & 0xff {
        // SQLITE_BUSY, SQLITE_LOCKED
        5 | 6 => DbFailure::Conflict,
        // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
        10 | 13 | 14 => DbFailure::Unavailable,
        // SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_TOOBIG
        18..=20 => DbFailure::Refused,
        _ => DbFailure::Unclassified,
    }
}

/// True when the request may be answered `UNAVAILABLE`: the database couldn't be
/// reached, or the work lost a race and the same request again will do.
pub fn is_unavailable(error: &DbErr) -> bool {
    classify(error).is_retryable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_of_both_databases_sort_into_the_same_kinds() {
        assert_eq!(classify_sqlstate("40001"), DbFailure::Conflict);
        assert_eq!(classify_sqlstate("40P01"), DbFailure::Conflict);
        assert_eq!(classify_sqlstate("57P01"), DbFailure::Unavailable);
        assert_eq!(classify_sqlstate("08006"), DbFailure::Unavailable);
        assert_eq!(classify_sqlstate("23505"), DbFailure::Refused);
        assert_eq!(classify_sqlstate("22P05"), DbFailure::Refused);
        assert_eq!(classify_sqlstate("XX000"), DbFailure::Unclassified);
        assert_eq!(classify_sqlite("5"), DbFailure::Conflict);
        assert_eq!(
            classify_sqlite("517"),
            DbFailure::Conflict,
            "SQLITE_BUSY_SNAPSHOT"
        );
        assert_eq!(
            classify_sqlite("2067"),
            DbFailure::Refused,
            "SQLITE_CONSTRAINT_UNIQUE"
        );
        assert_eq!(classify_sqlite("1"), DbFailure::Unclassified);
        assert_eq!(
            classify(&DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)),
            DbFailure::Unavailable
        );
        assert_eq!(classify(&DbErr::Type("bad".into())), DbFailure::Refused);
    }
}
