//! What the directory tells other services, built from its stored rows in one
//! place — for each change as it happens, and for `crm jobs republish-directory`,
//! which sends every branch, staff member and active teller pair again.
//!
//! Republishing rebuilds the referrals service's copies: after its database is
//! restored, or when a copy is added later (branch time zones) and needs the rows
//! written before it existed. Each message carries the row's own `updated_at`, and
//! the copies ignore older news, so it is safe to run at any time.

use crate::store::{branch, staff, teller_pair};
use crm_domain::messages::{
    BRANCH_CHANGED, BranchChanged, PAIR_CHANGED, PairChanged, STAFF_CHANGED, StaffChanged,
};
use crm_store::Db;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    TransactionTrait,
};

use crate::SERVICE;
use crate::error::Result;

pub fn branch_changed(model: &branch::Model) -> BranchChanged {
    BranchChanged {
        branch_id: model.branch_id.clone(),
        time_zone: model.time_zone.clone(),
        updated_at: model.updated_at,
    }
}

pub fn staff_changed(model: &staff::Model) -> StaffChanged {
    StaffChanged {
        staff_id: model.staff_id.clone(),
        role: model.role,
        branch_id: model.branch_id.clone(),
        active: model.active,
        capacity: model.capacity,
        out_of_office_until: model.out_of_office_until,
        updated_at: model.updated_at,
    }
}

pub fn pair_changed(model: &teller_pair::Model) -> PairChanged {
    PairChanged {
        teller_id: model.teller_id.clone(),
        rm_id: model.rm_id.clone(),
        valid_from: model.valid_from,
        valid_until: model.valid_until,
        updated_at: model.created_at,
    }
}

/// Publishes `message` of `message_type`, in the caller's transaction.
pub async fn publish<T: serde::Serialize>(
    connection: &impl ConnectionTrait,
    message_type: &str,
    message: &T,
) -> Result<()> {
    crm_bus::outbox::enqueue_event(connection, SERVICE, message_type, message_type, message)
        .await?;
    Ok(())
}

/// How many of each `republish_directory` sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Republished {
    pub branches: usize,
    pub staff: usize,
    pub pairs: usize,
}

/// Rows per transaction: a directory of any size goes out in bounded steps.
const PAGE: u64 = 500;

/// Writes a message for every branch, staff member and active pair into the
/// outbox; the serving process's relay publishes them.
pub async fn republish_directory(db: &Db) -> Result<Republished> {
    let sent = Republished {
        branches: republish_each(
            db,
            branch::Entity::find(),
            branch::Column::BranchId,
            |row| &row.branch_id,
            BRANCH_CHANGED,
            branch_changed,
        )
        .await?,
        staff: republish_each(
            db,
            staff::Entity::find(),
            staff::Column::StaffId,
            |row| &row.staff_id,
            STAFF_CHANGED,
            staff_changed,
        )
        .await?,
        pairs: republish_each(
            db,
            teller_pair::Entity::find().filter(teller_pair::Column::Active.eq(true)),
            teller_pair::Column::PairId,
            |row| &row.pair_id,
            PAIR_CHANGED,
            pair_changed,
        )
        .await?,
    };
    tracing::info!(?sent, "directory republished");
    Ok(sent)
}

/// Publishes `message_of` each of `rows`, a page per transaction, in `key` order.
async fn republish_each<E, T>(
    db: &Db,
    rows: Select<E>,
    key: E::Column,
    key_of: impl Fn(&E::Model) -> &String,
    message_type: &str,
    message_of: impl Fn(&E::Model) -> T,
) -> Result<usize>
where
    E: EntityTrait,
    T: serde::Serialize,
{
    let mut sent = 0;
    let mut after = String::new();
    loop {
        let page = rows
            .clone()
            .filter(key.gt(after.as_str()))
            .order_by_asc(key)
            .limit(PAGE)
            .all(db)
            .await?;
        let transaction = db.begin().await?;
        for row in &page {
            publish(&transaction, message_type, &message_of(row)).await?;
        }
        transaction.commit().await?;
        sent += page.len();
        match page.last() {
            Some(last) if page.len() as u64 == PAGE => after.clone_from(key_of(last)),
            _ => return Ok(sent),
        }
    }
}

/// `crm jobs republish-directory`, run against the clients service's database;
/// the serving process's relay publishes what it writes.
pub const REPUBLISH_DIRECTORY_JOB: crm_runtime::Job = crm_runtime::Job {
    name: "republish-directory",
    about: "Send every branch, staff member and active teller pair again, so the \
            referrals service rebuilds its copies (after a restore, or to fill a copy \
            added in an upgrade, such as branch time zones)",
    args: |command| command,
    run: |context| {
        Box::pin(async move {
            let sent = republish_directory(&context.db)
                .await
                .map_err(crm_runtime::ModuleError::failed)?;
            Ok(format!(
                "directory: {} branches, {} staff, {} teller pairs queued for publishing",
                sent.branches, sent.staff, sent.pairs
            ))
        })
    },
    // A maintenance command, run by hand only.
    schedule: None,
};
