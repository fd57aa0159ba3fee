//! Loads what the routing chain looks at from the local projections.

use crate::store::{referral, routing_client, routing_pair, routing_staff};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use crm_domain::routing::{Candidate, NobodyToRoute, RoutingDecision, RoutingRequest, route};
use crm_domain::sla::BusinessCalendar;
use crm_domain::{BranchId, Role, StaffId};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    Statement,
};

use crate::calendars;
use crate::error::{ReferralsError, Result};

/// A stored copy of a staff member as routing weighs them. A row whose ids no
/// longer parse is corrupt: routing fails loudly rather than quietly skip someone.
fn candidate(row: &routing_staff::Model) -> Result<Candidate> {
    let corrupt =
        |what: &str| ReferralsError::Corrupt(format!("routing_staff {:?}: {what}", row.staff_id));
    Ok(Candidate {
        staff_id: StaffId::parse(&row.staff_id).map_err(|_| corrupt("staff id"))?,
        role: row.role,
        branch_id: BranchId::parse(&row.branch_id).map_err(|_| corrupt("branch id"))?,
        active: row.active,
        capacity: row.capacity,
        out_of_office_until: row.out_of_office_until,
        open_referrals: i64::from(row.open_referrals),
        last_assigned_at: row.last_assigned_at,
    })
}

/// The people routing may consider for one referral.
pub struct Candidates {
    pub primary_rm: Option<Candidate>,
    pub paired_rm: Option<Candidate>,
    pub branch_staff: Vec<Candidate>,
}

fn pair_is_current(pair: &routing_pair::Model, today: NaiveDate) -> bool {
    pair.valid_from <= today && pair.valid_until.is_none_or(|until| until >= today)
}

/// The teller's paired RM today (in the branch's time zone), if they have one.
/// Read before routing's lock: pairs change by directory news, not by routing.
pub async fn paired_rm_id(
    db: &impl ConnectionTrait,
    teller_id: &StaffId,
    time_zone: Tz,
) -> Result<Option<String>> {
    let today = Utc::now().with_timezone(&time_zone).date_naive();
    Ok(routing_pair::Entity::find_by_id(teller_id.as_str())
        .one(db)
        .await?
        .filter(|pair| pair_is_current(pair, today))
        .map(|pair| pair.rm_id))
}

/// The branch's pool and the named RMs (who may sit in other branches), as they
/// are now: one query, since it runs under routing's lock.
pub async fn load(
    db: &impl ConnectionTrait,
    branch_id: &BranchId,
    primary_rm_id: Option<&str>,
    paired_rm_id: Option<&str>,
) -> Result<Candidates> {
    let named = named_ids(primary_rm_id, paired_rm_id);
    let in_pool = Condition::all()
        .add(routing_staff::Column::BranchId.eq(branch_id.as_str()))
        .add(routing_staff::Column::Role.is_in([Role::Rm, Role::BranchManager]));
    let rows = routing_staff::Entity::find()
        .filter(
            Condition::any()
                .add(in_pool)
                .add(routing_staff::Column::StaffId.is_in(named)),
        )
        .order_by_asc(routing_staff::Column::StaffId)
        .all(db)
        .await?;
    let is_pool = |row: &&routing_staff::Model| {
        row.branch_id == branch_id.as_str()
            && (row.role == Role::Rm || row.role == Role::BranchManager)
    };
    let branch_staff = rows
        .iter()
        .filter(is_pool)
        .map(candidate)
        .collect::<Result<_>>()?;
    candidates(&rows, primary_rm_id, paired_rm_id, branch_staff)
}

/// The ids a referral names (its client's primary RM, the teller's pair).
fn named_ids<'a>(primary_rm_id: Option<&'a str>, paired_rm_id: Option<&'a str>) -> Vec<&'a str> {
    [primary_rm_id, paired_rm_id]
        .into_iter()
        .flatten()
        .collect()
}

/// The named RMs found among `rows`, and `branch_staff` as the pool.
fn candidates(
    rows: &[routing_staff::Model],
    primary_rm_id: Option<&str>,
    paired_rm_id: Option<&str>,
    branch_staff: Vec<Candidate>,
) -> Result<Candidates> {
    Ok(Candidates {
        primary_rm: find_named(rows, primary_rm_id)?,
        paired_rm: find_named(rows, paired_rm_id)?,
        branch_staff,
    })
}

/// The candidate of staff member `id` among `rows`, if there.
fn find_named(rows: &[routing_staff::Model], id: Option<&str>) -> Result<Option<Candidate>> {
    id.and_then(|id| rows.iter().find(|row| row.staff_id == id))
        .map(candidate)
        .transpose()
}

/// The named RMs alone (the client's primary RM, the teller's pair), without
/// the branch pool: enough for a choice that names one of them.
pub async fn load_named(
    db: &impl ConnectionTrait,
    primary_rm_id: Option<&str>,
    paired_rm_id: Option<&str>,
) -> Result<Candidates> {
    let rows = routing_staff::Entity::find()
        .filter(routing_staff::Column::StaffId.is_in(named_ids(primary_rm_id, paired_rm_id)))
        .all(db)
        .await?;
    candidates(&rows, primary_rm_id, paired_rm_id, Vec::new())
}

/// Serialises routing per branch on PostgreSQL (SQLite's single connection already
/// does), for the length of the caller's transaction.
pub async fn lock_branch(transaction: &impl ConnectionTrait, branch_id: &str) -> Result<()> {
    if transaction.get_database_backend() == DbBackend::Postgres {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [format!("routing:{branch_id}").into()],
            ))
            .await?;
    }
    Ok(())
}

/// What the chain decides for a stored referral as the copies stand now.
pub struct Rerouting {
    pub decision: std::result::Result<RoutingDecision, NobodyToRoute>,
    /// The branch's calendar, for the new acceptance deadline.
    pub calendar: BusinessCalendar,
}

/// Runs the chain again for a stored referral: one that waits for routing, or one
/// whose holder (`leave_out`) can't work it — left out of every step but the
/// branch manager's, where the chain ends.
pub async fn route_stored(
    transaction: &impl ConnectionTrait,
    current: &referral::Model,
    leave_out: Option<&str>,
    default_calendar: &BusinessCalendar,
    now: DateTime<Utc>,
) -> Result<Rerouting> {
    let (Ok(branch_id), Ok(teller_id)) = (
        BranchId::parse(&current.branch_id),
        StaffId::parse(&current.referrer_id),
    ) else {
        return Err(ReferralsError::Corrupt(format!(
            "referral {} has unroutable branch or referrer",
            current.referral_id
        )));
    };
    let primary = match &current.client_id {
        Some(id) => routing_client::Entity::find_by_id(id.as_str())
            .one(transaction)
            .await?
            .and_then(|c| c.primary_rm_id),
        None => None,
    };
    let calendar = calendars::for_branch(transaction, &current.branch_id, default_calendar).await?;
    let paired = paired_rm_id(transaction, &teller_id, calendar.time_zone).await?;
    let mut candidates = load(
        transaction,
        &branch_id,
        primary.as_deref(),
        paired.as_deref(),
    )
    .await?;
    if let Some(left_out) = leave_out {
        let is_left_out = |c: &Candidate| c.staff_id.as_str() == left_out;
        candidates.primary_rm = candidates.primary_rm.filter(|c| !is_left_out(c));
        candidates.paired_rm = candidates.paired_rm.filter(|c| !is_left_out(c));
        candidates
            .branch_staff
            .retain(|c| !is_left_out(c) || c.role == Role::BranchManager);
    }
    let decision = route(&RoutingRequest {
        branch_id: &branch_id,
        teller_id: Some(&teller_id),
        primary_rm: candidates.primary_rm.as_ref(),
        paired_rm: candidates.paired_rm.as_ref(),
        branch_staff: &candidates.branch_staff,
        now,
    });
    Ok(Rerouting { decision, calendar })
}
