//! A campaign's progress against its audience frozen at launch: tasks, done,
//! converted, declined, unreachable and overdue, in total, per RM and per branch —
//! counted by the database (GROUP BY), kept current by the work queue's
//! completions (projection.rs).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_domain::campaign::TaskState;
use crm_domain::referral::Outcome;
use crm_proto::v1 as pb;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Select};

use crate::error::Result;
use crate::launch::rm_key;
use crate::store::campaign_task;

/// Whose tasks a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Campaign admins and the system.
    Everyone,
    /// A branch manager: their branch's tasks.
    Branch(String),
    /// An RM: their own.
    Rm(String),
}

impl Scope {
    fn apply(&self, select: Select<campaign_task::Entity>) -> Select<campaign_task::Entity> {
        match self {
            Scope::Everyone => select,
            Scope::Branch(branch_id) => {
                select.filter(campaign_task::Column::BranchId.eq(branch_id.as_str()))
            }
            Scope::Rm(rm_id) => select.filter(campaign_task::Column::RmId.eq(rm_id.as_str())),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub tasks: i64,
    pub done: i64,
    pub converted: i64,
    pub declined: i64,
    pub unreachable: i64,
    pub overdue: i64,
}

impl Tally {
    fn count(&mut self, state: TaskState, outcome: Option<Outcome>, n: i64) {
        // A task withdrawn by a cancel is no longer anyone's work.
        if state == TaskState::Withdrawn {
            return;
        }
        self.tasks += n;
        if state == TaskState::Done {
            self.done += n;
        }
        match outcome {
            Some(Outcome::Converted) => self.converted += n,
            Some(Outcome::Declined) => self.declined += n,
            Some(Outcome::Unreachable) => self.unreachable += n,
            Some(Outcome::Contacted) | None => {}
        }
    }

    fn add(&mut self, other: &Tally) {
        self.tasks += other.tasks;
        self.done += other.done;
        self.converted += other.converted;
        self.declined += other.declined;
        self.unreachable += other.unreachable;
        self.overdue += other.overdue;
    }

    pub fn to_proto(self, key: String) -> pb::ProgressRow {
        pb::ProgressRow {
            key,
            tasks: self.tasks,
            done: self.done,
            converted: self.converted,
            overdue: self.overdue,
            declined: self.declined,
            unreachable: self.unreachable,
        }
    }
}

/// RM, branch, state, outcome and how many tasks have them.
type CountedTasks = (Option<String>, String, TaskState, Option<Outcome>, i64);

/// Tallies per (RM key, branch) of the tasks `select` picks.
pub async fn tally(
    connection: &impl ConnectionTrait,
    select: Select<campaign_task::Entity>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<(String, String), Tally>> {
    use campaign_task::Column;
    let counted: Vec<CountedTasks> = select
        .clone()
        .select_only()
        .column(Column::RmId)
        .column(Column::BranchId)
        .column(Column::State)
        .column(Column::Outcome)
        .column_as(Expr::col(Column::ClientId).count(), "tasks")
        .group_by(Column::RmId)
        .group_by(Column::BranchId)
        .group_by(Column::State)
        .group_by(Column::Outcome)
        .into_tuple()
        .all(connection)
        .await?;
    let overdue: Vec<(Option<String>, String, i64)> = select
        .select_only()
        .column(Column::RmId)
        .column(Column::BranchId)
        .column_as(Expr::col(Column::ClientId).count(), "overdue")
        .filter(Column::State.eq(TaskState::Open))
        .filter(Column::DueAt.lt(now))
        .group_by(Column::RmId)
        .group_by(Column::BranchId)
        .into_tuple()
        .all(connection)
        .await?;
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for (rm_id, branch_id, state, outcome, n) in counted {
        let key = (rm_key(rm_id.as_deref(), &branch_id), branch_id);
        tallies.entry(key).or_default().count(state, outcome, n);
    }
    for (rm_id, branch_id, n) in overdue {
        let key = (rm_key(rm_id.as_deref(), &branch_id), branch_id);
        tallies.entry(key).or_default().overdue += n;
    }
    Ok(tallies)
}

/// GetCampaignProgress for `scope`.
pub async fn progress(
    connection: &impl ConnectionTrait,
    campaign_id: &str,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Result<pb::GetCampaignProgressResponse> {
    let select = scope.apply(
        campaign_task::Entity::find().filter(campaign_task::Column::CampaignId.eq(campaign_id)),
    );
    let tallies = tally(connection, select, now).await?;
    let mut totals = Tally::default();
    let mut by_rm: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_branch: BTreeMap<String, Tally> = BTreeMap::new();
    for ((rm, branch), tally) in &tallies {
        totals.add(tally);
        by_rm.entry(rm.clone()).or_default().add(tally);
        by_branch.entry(branch.clone()).or_default().add(tally);
    }
    Ok(pb::GetCampaignProgressResponse {
        totals: Some(totals.to_proto(String::new())),
        by_rm: by_rm
            .into_iter()
            .map(|(key, tally)| tally.to_proto(key))
            .collect(),
        by_branch: by_branch
            .into_iter()
            .map(|(key, tally)| tally.to_proto(key))
            .collect(),
    })
}
