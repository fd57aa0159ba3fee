//! Group commit for the trail of reads. Every GetClient and SearchClients answer
//! waits until its audit line is committed; committing each line on its own costs
//! one WAL flush per read, which caps reads at the disk's fsync rate. Lines from
//! concurrent reads are instead gathered into one multi-row INSERT (one commit),
//! and each read answers once the statement holding its line has committed — so
//! the trail stays durable before the answer, and a read whose line failed still
//! fails.
//!
//! Under light load a line is written at once, in a batch of one: gathering only
//! takes what is already waiting, it never sleeps for company. At most
//! [`WRITERS`] statements are in flight; lines that arrive meanwhile wait and go
//! in the next, larger batch.

use std::sync::Arc;

use crm_grpc::RpcError;
use sea_orm::EntityTrait;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::audit_writer::{self, Actor, Entry};
use crate::store::audit_event;

/// Statements in flight at once: enough to keep the database busy while one
/// batch is being flushed, few enough that batches grow under load.
const WRITERS: usize = 4;
/// Rows in one statement at most (PostgreSQL allows 65,535 bind parameters;
/// a row binds 13).
const MAX_ROWS: usize = 1_000;
/// Reads waiting for a writer at most; past it a read waits for room.
const QUEUE: usize = 8_192;

/// Why a batch was not written, as each of its reads reports it.
#[derive(Debug, Clone)]
struct BatchFailure {
    unavailable: bool,
    detail: String,
}

impl BatchFailure {
    fn of(error: &sea_orm::DbErr) -> Self {
        BatchFailure {
            unavailable: crm_store::db::is_unavailable(error),
            detail: format!("{error:?}"),
        }
    }

    fn into_error(self) -> RpcError {
        if self.unavailable {
            RpcError::Unavailable {
                dependency: "database",
                cause: self.detail,
            }
        } else {
            RpcError::internal("database error", self.detail)
        }
    }
}

struct Waiting {
    rows: Vec<audit_event::ActiveModel>,
    written: oneshot::Sender<Result<(), BatchFailure>>,
}

/// The handle reads record through; cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditBatcher {
    lines: mpsc::Sender<Waiting>,
}

impl AuditBatcher {
    /// Starts the writer on the current runtime. It stops when the last handle
    /// is dropped, after writing what was handed to it.
    pub(crate) fn start(db: crm_store::Db) -> Self {
        let (lines, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(db, waiting));
        AuditBatcher { lines }
    }

    /// Appends `entries` for `actor` and returns once they are committed.
    pub(crate) async fn record(
        &self,
        actor: &Actor,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(), RpcError> {
        let rows = entries
            .into_iter()
            .map(|entry| audit_writer::row_for(actor, entry, Vec::new()))
            .collect();
        self.write(rows).await
    }

    /// Appends one line for a read of many clients (a search page), naming every
    /// client it showed, and returns once it is committed.
    pub(crate) async fn record_read_of_many(
        &self,
        actor: &Actor,
        entry: Entry,
        client_ids: Vec<String>,
    ) -> Result<(), RpcError> {
        self.write(vec![audit_writer::row_for(actor, entry, client_ids)])
            .await
    }

    async fn write(&self, rows: Vec<audit_event::ActiveModel>) -> Result<(), RpcError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (written, committed) = oneshot::channel();
        let stopped = || RpcError::Unavailable {
            dependency: "audit trail",
            cause: "the audit writer has stopped (the process is shutting down)".to_owned(),
        };
        self.lines
            .send(Waiting { rows, written })
            .await
            .map_err(|_| stopped())?;
        committed
            .await
            .map_err(|_| stopped())?
            .map_err(BatchFailure::into_error)
    }
}

/// Takes what is waiting, up to [`MAX_ROWS`], whenever a writer is free.
async fn write_batches(db: crm_store::Db, mut waiting: mpsc::Receiver<Waiting>) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    while let Some(first) = waiting.recv().await {
        // Waiting for a writer first lets the lines behind this one pile up into
        // the next batch while the database is busy.
        let Ok(writer) = writers.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut rows: usize = batch[0].rows.len();
        while rows < MAX_ROWS {
            match waiting.try_recv() {
                Ok(next) => {
                    rows += next.rows.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            let outcome = insert(&db, &mut batch).await;
            for read in batch {
                // The read may have been cancelled (its caller went away): its line
                // is written all the same, nobody is left to tell.
                let _ = read.written.send(outcome.clone());
            }
            drop(writer);
        });
    }
}

async fn insert(db: &crm_store::Db, batch: &mut [Waiting]) -> Result<(), BatchFailure> {
    let rows: Vec<audit_event::ActiveModel> = batch
        .iter_mut()
        .flat_map(|read| std::mem::take(&mut read.rows))
        .collect();
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await
        .map(drop)
        .map_err(|error| {
            tracing::warn!(error = %error, "audit lines could not be written; their reads fail");
            BatchFailure::of(&error)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_writer::{ClientRef, Decision};
    use sea_orm::{PaginatorTrait, QueryFilter};

    async fn book() -> crm_store::Db {
        let db = crm_store::db::connect("sqlite::memory:", None)
            .await
            .expect("in-memory sqlite");
        crm_runtime::migrate(&db, &[&crate::Module])
            .await
            .expect("migrations");
        db
    }

    fn actor() -> Actor {
        Actor {
            principal: crm_auth::Principal {
                staff_id: crm_domain::StaffId::parse("B-001-RM-01").expect("staff id"),
                role: crm_domain::Role::Rm,
                branch_id: crm_domain::BranchId::parse("B-001").expect("branch id"),
            },
            request_id: "req-1".to_owned(),
        }
    }

    fn read_of(client_id: &str) -> Entry {
        Entry::allowed(
            "client.read",
            ClientRef {
                client_id,
                home_branch_id: "B-001",
            },
        )
    }

    #[tokio::test]
    async fn concurrent_reads_each_answer_after_their_own_line_is_stored() {
        let db = book().await;
        let batcher = AuditBatcher::start(db.clone());
        let reads = (0..300).map(|n| {
            let (batcher, db) = (batcher.clone(), db.clone());
            async move {
                let client = format!("C{n:09}");
                batcher.record(&actor(), [read_of(&client)]).await?;
                // Once answered, the line is there for anyone to read.
                let stored = audit_event::Entity::find()
                    .filter(sea_orm::ColumnTrait::eq(
                        &audit_event::Column::ClientId,
                        client.as_str(),
                    ))
                    .count(&db)
                    .await
                    .map_err(RpcError::from)?;
                Ok::<_, RpcError>(stored)
            }
        });
        let stored = futures::future::join_all(reads).await;
        assert!(
            stored.iter().all(|found| matches!(found, Ok(1))),
            "{stored:?}"
        );
        let all = audit_event::Entity::find().count(&db).await.expect("count");
        assert_eq!(all, 300);
        let many = batcher
            .record_read_of_many(
                &actor(),
                Entry::without_client("client.search", Decision::Allowed, "rm_id"),
                vec!["C000000001".to_owned(), "C000000002".to_owned()],
            )
            .await;
        assert!(many.is_ok(), "{many:?}");
    }

    #[tokio::test]
    async fn a_read_whose_line_cannot_be_written_fails() {
        let db = book().await;
        let batcher = AuditBatcher::start(db.clone());
        db.close_by_ref().await.expect("close");
        let refused = batcher.record(&actor(), [read_of("C000000001")]).await;
        assert!(refused.is_err(), "a read went unrecorded: {refused:?}");
    }
}
