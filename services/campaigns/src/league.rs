//! League tables (排名 / 考核) for a period: per branch, and per RM within one
//! branch — referrals made, accepted and converted, the conversion rate and the
//! median time to accept; campaign tasks done and overdue; new wealth and HNW
//! clients; alerts whose funds were kept — ranked, and measured against the
//! targets a campaign admin sets per branch and period (达成率). Every figure is
//! counted by the database from this service's own tables, which the other
//! services' messages keep (projection.rs).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_auth::Principal;
use crm_domain::campaign::{Quarter, TaskState, year_starts_at};
use crm_domain::{BranchId, Role, Violations};
use crm_grpc::RpcError;
use crm_proto::v1 as pb;
use crm_store::Db;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};

use crate::error::Result;
use crate::store::{
    branch_target, campaign, campaign_task, league_funds_kept, league_referral,
    league_tier_crossing,
};

/// A league period: a quarter, or a whole year (quarter 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub year: i32,
    pub quarter: i32,
}

impl Period {
    pub fn parse(
        violations: &mut Violations,
        field: &str,
        period: Option<&pb::LeaguePeriod>,
    ) -> Period {
        let Some(period) = period else {
            violations.add(field, "is required");
            return Period {
                year: 0,
                quarter: 0,
            };
        };
        if !(2000..=2100).contains(&period.year) {
            violations.add(format!("{field}.year"), "must be between 2000 and 2100");
        }
        if !(0..=4).contains(&period.quarter) {
            violations.add(
                format!("{field}.quarter"),
                "must be 1 to 4, or 0 for the whole year",
            );
        }
        Period {
            year: period.year,
            quarter: period.quarter,
        }
    }

    /// [start, end) in the bank's time zone.
    pub fn range(self, zone: chrono_tz::Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if self.quarter == 0 {
            return Some((
                year_starts_at(self.year, zone)?,
                year_starts_at(self.year + 1, zone)?,
            ));
        }
        let quarter = Quarter {
            year: self.year,
            quarter: u32::try_from(self.quarter).ok()?,
        };
        Some((quarter.starts_at(zone)?, quarter.ends_at(zone)?))
    }
}

/// One row's figures before ranking.
#[derive(Debug, Clone, Default)]
struct Figures {
    branch_id: String,
    made: i64,
    accepted: i64,
    converted: i64,
    minutes_to_accept: Vec<i64>,
    tasks: i64,
    tasks_done: i64,
    tasks_overdue: i64,
    new_wealth: i64,
    new_hnw: i64,
    funds_kept: i64,
}

fn median(values: &mut [i64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle] as f64
    } else {
        (values[middle - 1] + values[middle]) as f64 / 2.0
    }
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl Figures {
    fn ranked_row(&mut self, key: String, target: Option<&branch_target::Model>) -> pb::LeagueRow {
        let mut row = pb::LeagueRow {
            key,
            branch_id: self.branch_id.clone(),
            rank: 0,
            referrals_made: self.made,
            referrals_accepted: self.accepted,
            referrals_converted: self.converted,
            conversion_rate: ratio(self.converted, self.made),
            median_minutes_to_accept: median(&mut self.minutes_to_accept),
            campaign_tasks_done: self.tasks_done,
            campaign_tasks_overdue: self.tasks_overdue,
            new_hnw_clients: self.new_hnw,
            new_wealth_clients: self.new_wealth,
            funds_kept_alerts: self.funds_kept,
            ..Default::default()
        };
        if let Some(target) = target {
            let mut measured = Vec::new();
            if target.new_wealth_clients > 0 {
                row.wealth_clients_attainment = ratio(self.new_wealth, target.new_wealth_clients);
                measured.push(row.wealth_clients_attainment);
            }
            if target.new_hnw_clients > 0 {
                row.hnw_clients_attainment = ratio(self.new_hnw, target.new_hnw_clients);
                measured.push(row.hnw_clients_attainment);
            }
            if target.campaign_completion_percent > 0 {
                let completion = ratio(self.tasks_done, self.tasks) * 100.0;
                row.campaign_completion_attainment =
                    completion / f64::from(target.campaign_completion_percent);
                measured.push(row.campaign_completion_attainment);
            }
            if target.funds_kept_alerts > 0 {
                row.funds_kept_attainment = ratio(self.funds_kept, target.funds_kept_alerts);
                measured.push(row.funds_kept_attainment);
            }
            if !measured.is_empty() {
                row.attainment = measured.iter().sum::<f64>() / measured.len() as f64;
            }
        }
        row
    }
}

/// The figures of `key` (a branch, or an RM of `branch_id`), started empty.
fn figures_of<'a>(
    rows: &'a mut BTreeMap<String, Figures>,
    key: String,
    branch_id: &str,
) -> &'a mut Figures {
    rows.entry(key).or_insert_with(|| Figures {
        branch_id: branch_id.to_owned(),
        ..Figures::default()
    })
}

/// `select` limited to one branch's rows when only its RMs are wanted.
fn in_branch<E: EntityTrait>(
    select: sea_orm::Select<E>,
    branch: impl ColumnTrait,
    grouping: &Grouping,
) -> sea_orm::Select<E> {
    match grouping {
        Grouping::Branches => select,
        Grouping::RmsOf(only) => select.filter(branch.eq(only.as_str())),
    }
}

/// How rows are grouped: by branch, or by RM within one branch.
#[derive(Debug, Clone)]
enum Grouping {
    Branches,
    RmsOf(String),
}

async fn figures(
    connection: &impl ConnectionTrait,
    period: Period,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    grouping: &Grouping,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Figures>> {
    let mut rows: BTreeMap<String, Figures> = BTreeMap::new();
    let key_of = |branch_id: &str, rm_id: &str| match grouping {
        Grouping::Branches => Some(branch_id.to_owned()),
        Grouping::RmsOf(branch) if branch == branch_id && !rm_id.is_empty() => {
            Some(rm_id.to_owned())
        }
        Grouping::RmsOf(_) => None,
    };
    // Referrals made in the period, as made and as they went on: counted by the
    // database; only the accepted ones' minutes come back, for the medians.
    let referrals: Vec<(String, String, i64, i64, i64)> = in_branch(
        league_referral::Entity::find(),
        league_referral::Column::BranchId,
        grouping,
    )
    .select_only()
    .column(league_referral::Column::BranchId)
    .column(league_referral::Column::RmId)
    .column_as(
        Expr::col(league_referral::Column::ReferralId).count(),
        "made",
    )
    .column_as(
        Expr::col(league_referral::Column::AcceptedAt).count(),
        "accepted",
    )
    .column_as(
        Expr::col(league_referral::Column::ConvertedAt).count(),
        "converted",
    )
    .filter(league_referral::Column::MadeAt.gte(start))
    .filter(league_referral::Column::MadeAt.lt(end))
    .group_by(league_referral::Column::BranchId)
    .group_by(league_referral::Column::RmId)
    .into_tuple()
    .all(connection)
    .await?;
    for (branch_id, rm_id, made, accepted, converted) in referrals {
        let Some(key) = key_of(&branch_id, &rm_id) else {
            continue;
        };
        let row = figures_of(&mut rows, key, &branch_id);
        row.made += made;
        row.accepted += accepted;
        row.converted += converted;
    }
    let minutes: Vec<(String, String, i64)> = in_branch(
        league_referral::Entity::find(),
        league_referral::Column::BranchId,
        grouping,
    )
    .select_only()
    .column(league_referral::Column::BranchId)
    .column(league_referral::Column::RmId)
    .column(league_referral::Column::MinutesToAccept)
    .filter(league_referral::Column::MadeAt.gte(start))
    .filter(league_referral::Column::MadeAt.lt(end))
    .filter(league_referral::Column::MinutesToAccept.is_not_null())
    .into_tuple()
    .all(connection)
    .await?;
    for (branch_id, rm_id, minutes) in minutes {
        if let Some(key) = key_of(&branch_id, &rm_id) {
            figures_of(&mut rows, key, &branch_id)
                .minutes_to_accept
                .push(minutes);
        }
    }
    // Campaign tasks of the period's campaigns, counted by the database.
    let mut period_campaigns = Query::select()
        .column(campaign::Column::CampaignId)
        .from(campaign::Entity)
        .and_where(Expr::col(campaign::Column::PeriodYear).eq(period.year))
        .to_owned();
    if period.quarter != 0 {
        period_campaigns.and_where(Expr::col(campaign::Column::PeriodQuarter).eq(period.quarter));
    }
    let tasks: Vec<(String, Option<String>, TaskState, i64)> = in_branch(
        campaign_task::Entity::find(),
        campaign_task::Column::BranchId,
        grouping,
    )
    .select_only()
    .column(campaign_task::Column::BranchId)
    .column(campaign_task::Column::RmId)
    .column(campaign_task::Column::State)
    .column_as(Expr::col(campaign_task::Column::ClientId).count(), "tasks")
    .filter(campaign_task::Column::CampaignId.in_subquery(period_campaigns.clone()))
    .group_by(campaign_task::Column::BranchId)
    .group_by(campaign_task::Column::RmId)
    .group_by(campaign_task::Column::State)
    .into_tuple()
    .all(connection)
    .await?;
    for (branch_id, rm_id, state, count) in tasks {
        let Some(key) = key_of(&branch_id, rm_id.as_deref().unwrap_or_default()) else {
            continue;
        };
        let row = figures_of(&mut rows, key, &branch_id);
        if state != TaskState::Withdrawn {
            row.tasks += count;
        }
        if state == TaskState::Done {
            row.tasks_done += count;
        }
    }
    let overdue: Vec<(String, Option<String>, i64)> = in_branch(
        campaign_task::Entity::find(),
        campaign_task::Column::BranchId,
        grouping,
    )
    .select_only()
    .column(campaign_task::Column::BranchId)
    .column(campaign_task::Column::RmId)
    .column_as(
        Expr::col(campaign_task::Column::ClientId).count(),
        "overdue",
    )
    .filter(campaign_task::Column::CampaignId.in_subquery(period_campaigns))
    .filter(campaign_task::Column::State.eq(TaskState::Open))
    .filter(campaign_task::Column::DueAt.lt(now))
    .group_by(campaign_task::Column::BranchId)
    .group_by(campaign_task::Column::RmId)
    .into_tuple()
    .all(connection)
    .await?;
    for (branch_id, rm_id, count) in overdue {
        if let Some(key) = key_of(&branch_id, rm_id.as_deref().unwrap_or_default()) {
            figures_of(&mut rows, key, &branch_id).tasks_overdue += count;
        }
    }
    // New wealth and HNW clients: each client once per crossing in the period.
    let crossings: Vec<(String, Option<String>, String, i64)> = in_branch(
        league_tier_crossing::Entity::find(),
        league_tier_crossing::Column::BranchId,
        grouping,
    )
    .select_only()
    .column(league_tier_crossing::Column::BranchId)
    .column(league_tier_crossing::Column::RmId)
    .column(league_tier_crossing::Column::Crossed)
    .column_as(
        Expr::col(league_tier_crossing::Column::ClientId).count_distinct(),
        "clients",
    )
    .filter(league_tier_crossing::Column::ChangedAt.gte(start))
    .filter(league_tier_crossing::Column::ChangedAt.lt(end))
    .group_by(league_tier_crossing::Column::BranchId)
    .group_by(league_tier_crossing::Column::RmId)
    .group_by(league_tier_crossing::Column::Crossed)
    .into_tuple()
    .all(connection)
    .await?;
    for (branch_id, rm_id, crossed, clients) in crossings {
        let Some(key) = key_of(&branch_id, rm_id.as_deref().unwrap_or_default()) else {
            continue;
        };
        let row = figures_of(&mut rows, key, &branch_id);
        match crossed.as_str() {
            "wealth" => row.new_wealth += clients,
            _ => row.new_hnw += clients,
        }
    }
    let kept: Vec<(String, String, i64)> = in_branch(
        league_funds_kept::Entity::find(),
        league_funds_kept::Column::BranchId,
        grouping,
    )
    .select_only()
    .column(league_funds_kept::Column::BranchId)
    .column(league_funds_kept::Column::RmId)
    .column_as(
        Expr::col(league_funds_kept::Column::WorkItemId).count(),
        "kept",
    )
    .filter(league_funds_kept::Column::CompletedAt.gte(start))
    .filter(league_funds_kept::Column::CompletedAt.lt(end))
    .group_by(league_funds_kept::Column::BranchId)
    .group_by(league_funds_kept::Column::RmId)
    .into_tuple()
    .all(connection)
    .await?;
    for (branch_id, rm_id, count) in kept {
        if let Some(key) = key_of(&branch_id, &rm_id) {
            figures_of(&mut rows, key, &branch_id).funds_kept += count;
        }
    }
    Ok(rows)
}

/// Ranks rows: by attainment when any has a target, then by conversions.
fn ranked(mut rows: Vec<pb::LeagueRow>) -> Vec<pb::LeagueRow> {
    rows.sort_by(|a, b| {
        b.attainment
            .total_cmp(&a.attainment)
            .then(b.referrals_converted.cmp(&a.referrals_converted))
            .then(b.conversion_rate.total_cmp(&a.conversion_rate))
            .then(b.campaign_tasks_done.cmp(&a.campaign_tasks_done))
            .then(a.key.cmp(&b.key))
    });
    for (index, row) in rows.iter_mut().enumerate() {
        row.rank = i32::try_from(index + 1).unwrap_or(i32::MAX);
    }
    rows
}

/// GetLeagueTable, scoped: the bank's branch ranking for every role that may see
/// it; RM rows of the caller's own branch (a manager: all of them; an RM: their
/// own); a campaign admin names the branch whose RMs to show.
pub async fn league_table(
    db: &Db,
    principal: &Principal,
    input: &pb::GetLeagueTableRequest,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<pb::GetLeagueTableResponse> {
    let mut violations = Violations::new();
    let period = Period::parse(&mut violations, "period", input.period.as_ref());
    let asked_branch = if input.branch_id.is_empty() {
        None
    } else {
        violations
            .check("branch_id", BranchId::parse(&input.branch_id))
            .map(|b| b.to_string())
    };
    let range = period.range(zone);
    let range = violations.finish(|| range)?;
    let rm_branch = match principal.role {
        Role::CampaignAdmin | Role::System => asked_branch,
        Role::BranchManager | Role::Rm => {
            let own = principal.branch_id.to_string();
            if asked_branch.as_ref().is_some_and(|asked| *asked != own) {
                return Err(RpcError::PermissionDenied(
                    "RM rows of another branch are its manager's".into(),
                )
                .into());
            }
            Some(own)
        }
        Role::Teller => {
            return Err(RpcError::PermissionDenied(
                "role teller may not read league tables".into(),
            )
            .into());
        }
    };
    let targets: BTreeMap<String, branch_target::Model> = branch_target::Entity::find()
        .filter(branch_target::Column::PeriodYear.eq(period.year))
        .filter(branch_target::Column::PeriodQuarter.eq(period.quarter))
        .all(db)
        .await?
        .into_iter()
        .map(|target| (target.branch_id.clone(), target))
        .collect();
    let mut branch_figures = figures(db, period, range, &Grouping::Branches, now).await?;
    for branch in targets.keys() {
        figures_of(&mut branch_figures, branch.clone(), branch);
    }
    let branches = ranked(
        branch_figures
            .iter_mut()
            .map(|(key, figures)| figures.ranked_row(key.clone(), targets.get(key)))
            .collect(),
    );
    let rms = match rm_branch {
        None => Vec::new(),
        Some(branch) => {
            let mut rm_figures = figures(db, period, range, &Grouping::RmsOf(branch), now).await?;
            let rows = ranked(
                rm_figures
                    .iter_mut()
                    .map(|(key, figures)| figures.ranked_row(key.clone(), None))
                    .collect(),
            );
            match principal.role {
                // An RM sees their own row (with its rank among the branch's RMs).
                Role::Rm => rows
                    .into_iter()
                    .filter(|row| row.key == principal.staff_id.as_str())
                    .collect(),
                _ => rows,
            }
        }
    };
    Ok(pb::GetLeagueTableResponse { branches, rms })
}

/// SetBranchTarget: a campaign admin's targets for a branch and period.
pub async fn set_target(
    db: &Db,
    principal: &Principal,
    input: &pb::SetBranchTargetRequest,
    now: DateTime<Utc>,
) -> Result<pb::BranchTarget> {
    principal.require_any(&[Role::CampaignAdmin], "set branch targets")?;
    let mut violations = Violations::new();
    let target = input.target.clone().unwrap_or_default();
    if input.target.is_none() {
        violations.add("target", "is required");
    }
    let branch = violations.check("target.branch_id", BranchId::parse(&target.branch_id));
    let period = Period::parse(&mut violations, "target.period", target.period.as_ref());
    for (field, value) in [
        ("target.new_wealth_clients", target.new_wealth_clients),
        ("target.new_hnw_clients", target.new_hnw_clients),
        ("target.funds_kept_alerts", target.funds_kept_alerts),
    ] {
        if !(0..=10_000_000).contains(&value) {
            violations.add(field, "must be between 0 and 10,000,000");
        }
    }
    if !(0..=100).contains(&target.campaign_completion_percent) {
        violations.add(
            "target.campaign_completion_percent",
            "must be between 0 and 100",
        );
    }
    let branch = violations.finish(|| branch)?;
    use branch_target::Column;
    branch_target::Entity::insert(branch_target::ActiveModel {
        branch_id: Set(branch.to_string()),
        period_year: Set(period.year),
        period_quarter: Set(period.quarter),
        new_wealth_clients: Set(target.new_wealth_clients),
        new_hnw_clients: Set(target.new_hnw_clients),
        campaign_completion_percent: Set(target.campaign_completion_percent),
        funds_kept_alerts: Set(target.funds_kept_alerts),
        set_by: Set(principal.staff_id.to_string()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([Column::BranchId, Column::PeriodYear, Column::PeriodQuarter])
            .update_columns([
                Column::NewWealthClients,
                Column::NewHnwClients,
                Column::CampaignCompletionPercent,
                Column::FundsKeptAlerts,
                Column::SetBy,
                Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(pb::BranchTarget {
        branch_id: branch.to_string(),
        ..target
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranks() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [7, 1, 3]), 3.0);
        assert_eq!(median(&mut [4, 1, 3, 2]), 2.5);
        let row = |key: &str, converted, attainment| pb::LeagueRow {
            key: key.into(),
            referrals_converted: converted,
            attainment,
            ..Default::default()
        };
        let rows = ranked(vec![
            row("B-1", 5, 0.5),
            row("B-2", 9, 0.5),
            row("B-3", 1, 1.2),
        ]);
        let order: Vec<_> = rows.iter().map(|r| (r.key.as_str(), r.rank)).collect();
        assert_eq!(order, [("B-3", 1), ("B-2", 2), ("B-1", 3)]);
    }
}
