//! Referrer credit: for a period, per teller and per branch — referrals made,
//! accepted, converted, the conversion rate and the median time to acceptance.
//! Tellers see their own; branch managers their branch; campaign admins and the
//! system every branch.

use std::collections::BTreeMap;

use crate::store::referral;
use chrono::{DateTime, Duration, Utc};
use crm_auth::principal_of;
use crm_domain::referral::ReferralStatus;
use crm_domain::{BranchId, Role, StaffId, Violations};
use crm_grpc::wire;
use crm_proto::v1 as pb;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::{Request, Response};

use crate::error::{ReferralsError, Result};
use crate::service::Referrals;

/// What one group of referrals came to.
#[derive(Default)]
struct Tally {
    made: i64,
    accepted: i64,
    converted: i64,
    seconds_to_accept: Vec<i64>,
}

impl Tally {
    fn add(&mut self, row: &referral::Model) {
        self.made += 1;
        if let Some(accepted_at) = row.accepted_at {
            self.accepted += 1;
            self.seconds_to_accept
                .push((accepted_at - row.created_at).num_seconds().max(0));
        }
        if row.status == ReferralStatus::Converted {
            self.converted += 1;
        }
    }

    fn into_proto(mut self) -> pb::ReferralCounts {
        self.seconds_to_accept.sort_unstable();
        let median = match self.seconds_to_accept.len() {
            0 => 0,
            n if n % 2 == 1 => self.seconds_to_accept[n / 2],
            n => (self.seconds_to_accept[n / 2 - 1] + self.seconds_to_accept[n / 2]) / 2,
        };
        let rate = (self.converted * 10_000)
            .checked_div(self.made)
            .unwrap_or(0);
        pb::ReferralCounts {
            made: self.made,
            accepted: self.accepted,
            converted: self.converted,
            conversion_rate_bp: i32::try_from(rate).unwrap_or(0),
            median_seconds_to_accept: median,
        }
    }
}

/// The longest period one request may cover: a year and a day (leap years).
const MAX_WINDOW_DAYS: i64 = 366;

impl Referrals {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_get_referral_stats(
        &self,
        request: Request<pb::GetReferralStatsRequest>,
    ) -> Result<Response<pb::GetReferralStatsResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let branch = violations
            .check("branch_id", BranchId::parse_optional(&input.branch_id))
            .flatten();
        let referrer = violations
            .check("referrer_id", StaffId::parse_optional(&input.referrer_id))
            .flatten();
        // Who may ask comes first: nothing of the request is looked at for a role
        // that may not ask at all.
        let scope = match principal.role {
            Role::System | Role::CampaignAdmin => None,
            Role::BranchManager => {
                if branch.as_ref().is_some_and(|b| b != &principal.branch_id) {
                    return Err(ReferralsError::PermissionDenied(
                        "may read the credit of own branch only".into(),
                    ));
                }
                Some(referral::Column::BranchId.eq(principal.branch_id.as_str()))
            }
            Role::Teller => {
                if referrer.as_ref().is_some_and(|r| r != &principal.staff_id) {
                    return Err(ReferralsError::PermissionDenied(
                        "tellers read their own credit".into(),
                    ));
                }
                Some(referral::Column::ReferrerId.eq(principal.staff_id.as_str()))
            }
            Role::Rm => {
                return Err(ReferralsError::PermissionDenied(
                    "referrer credit is for tellers and their managers".into(),
                ));
            }
        };
        let now = Utc::now();
        let to: Option<DateTime<Utc>> = match &input.to_time {
            Some(ts) => violations.check("to_time", wire::datetime(ts)),
            None => Some(now),
        };
        let from = match &input.from_time {
            Some(ts) => violations.check("from_time", wire::datetime(ts)),
            // Bounded wire times make this subtraction safe; checked all the same.
            None => to.and_then(|to| to.checked_sub_signed(Duration::days(30))),
        };
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                violations.add("to_time", "must be after from_time");
            } else if to - from > Duration::days(MAX_WINDOW_DAYS) {
                violations.add(
                    "from_time",
                    format!("the window may be at most {MAX_WINDOW_DAYS} days"),
                );
            }
        }
        let (from, to) = violations.finish(|| Some((from?, to?)))?;

        let mut query = referral::Entity::find()
            .filter(referral::Column::CreatedAt.gte(from))
            .filter(referral::Column::CreatedAt.lt(to));
        // The caller's scope first; the filters narrow it, never widen it.
        if let Some(scope) = scope {
            query = query.filter(scope);
        }
        if let Some(branch) = &branch {
            query = query.filter(referral::Column::BranchId.eq(branch.as_str()));
        }
        if let Some(referrer) = &referrer {
            query = query.filter(referral::Column::ReferrerId.eq(referrer.as_str()));
        }
        let rows = query.all(&self.state.db).await?;
        let mut per_referrer: BTreeMap<(String, String), Tally> = BTreeMap::new();
        let mut per_branch: BTreeMap<String, Tally> = BTreeMap::new();
        for row in &rows {
            per_referrer
                .entry((row.referrer_id.clone(), row.branch_id.clone()))
                .or_default()
                .add(row);
            per_branch
                .entry(row.branch_id.clone())
                .or_default()
                .add(row);
        }
        Ok(Response::new(pb::GetReferralStatsResponse {
            referrers: per_referrer
                .into_iter()
                .map(|((referrer_id, branch_id), tally)| pb::ReferrerStats {
                    referrer_id,
                    branch_id,
                    counts: Some(tally.into_proto()),
                })
                .collect(),
            branches: per_branch
                .into_iter()
                .map(|(branch_id, tally)| pb::BranchStats {
                    branch_id,
                    counts: Some(tally.into_proto()),
                })
                .collect(),
        }))
    }
}
