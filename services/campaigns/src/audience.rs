//! Who a campaign is for, as one SQL condition on this service's projection of
//! the client book (`campaign_clients`): tier and up, segments (any of them),
//! branches, a minimum daily average, upgrade candidates; never a client who
//! withdrew marketing consent, and no `do_not_contact` client unless the
//! campaign admin includes them on purpose (a service call, not marketing).

use crm_domain::tier::Tier;
use crm_domain::validation::check_segment;
use crm_domain::{BranchId, Money, Violations};
use crm_grpc::WireEnum;
use crm_proto::v1 as pb;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, Condition};
use serde::{Deserialize, Serialize};

use crate::store::campaign_client;

/// At most this many segments or branches in one audience.
const MAX_LIST: usize = 100;

/// An audience as stored with its campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    pub tier_min: Option<Tier>,
    pub segments: Vec<String>,
    pub branch_ids: Vec<String>,
    /// CNY minor units.
    pub min_aum_minor: Option<i64>,
    pub include_do_not_contact: bool,
    pub upgrade_candidates: bool,
}

pub fn tier_rank(tier: Tier) -> i32 {
    match tier {
        Tier::Mass => 0,
        Tier::Wealth => 1,
        Tier::Hnw => 2,
        Tier::Private => 3,
    }
}

impl Audience {
    /// Parses `audience` (field paths under `field`), recording what is wrong.
    pub fn parse(violations: &mut Violations, field: &str, audience: &pb::Audience) -> Audience {
        let tier_min = match audience.tier_min {
            0 => None,
            value => {
                let tier = Tier::from_proto(value);
                if tier.is_none() {
                    violations.add(format!("{field}.tier_min"), "is not a known tier");
                }
                tier
            }
        };
        if audience.segments.len() > MAX_LIST {
            violations.add(format!("{field}.segments"), format!("at most {MAX_LIST}"));
        }
        let mut segments = Vec::new();
        for (index, segment) in audience.segments.iter().enumerate() {
            // The client book's rule: what it stores is what can match.
            let before = violations.len();
            check_segment(violations, &format!("{field}.segments[{index}]"), segment);
            if violations.len() == before && !segments.contains(segment) {
                segments.push(segment.clone());
            }
        }
        if audience.branch_ids.len() > MAX_LIST {
            violations.add(format!("{field}.branch_ids"), format!("at most {MAX_LIST}"));
        }
        let mut branch_ids = Vec::new();
        for (index, branch) in audience.branch_ids.iter().enumerate() {
            if let Some(branch) = violations.check(
                &format!("{field}.branch_ids[{index}]"),
                BranchId::parse(branch),
            ) && !branch_ids.contains(&branch.to_string())
            {
                branch_ids.push(branch.to_string());
            }
        }
        let min_aum_minor = audience.min_aum.as_ref().and_then(|money| {
            match Money::parse_non_negative(money.minor_units, &money.currency) {
                Ok(money) if money.currency() != "CNY" => {
                    violations.add(
                        format!("{field}.min_aum"),
                        "must be in CNY: tiers and averages are counted in CNY",
                    );
                    None
                }
                Ok(money) => Some(money.minor_units()),
                Err(error) => {
                    violations.add(format!("{field}.min_aum"), error.to_string());
                    None
                }
            }
        });
        Audience {
            tier_min,
            segments,
            branch_ids,
            min_aum_minor,
            include_do_not_contact: audience.include_do_not_contact,
            upgrade_candidates: audience.upgrade_candidates,
        }
    }

    pub fn to_proto(&self) -> pb::Audience {
        pb::Audience {
            tier_min: self.tier_min.map_or(0, WireEnum::to_wire),
            segments: self.segments.clone(),
            branch_ids: self.branch_ids.clone(),
            min_aum: self.min_aum_minor.map(|minor| pb::Money {
                minor_units: minor,
                currency: "CNY".into(),
            }),
            include_do_not_contact: self.include_do_not_contact,
            upgrade_candidates: self.upgrade_candidates,
        }
    }

    /// The clients of the audience, as a condition on `campaign_clients`.
    /// `upgrade_percent`: how far below the next tier an upgrade candidate is.
    pub fn condition(&self, upgrade_percent: u8) -> Condition {
        use campaign_client::Column;
        // Consent is the law's, not the campaign's: always required.
        let mut condition = Condition::all().add(Column::MarketingConsent.eq(true));
        if !self.include_do_not_contact {
            condition = condition.add(Column::DoNotContact.eq(false));
        }
        if let Some(tier) = self.tier_min {
            condition = condition.add(Column::TierRank.gte(tier_rank(tier)));
        }
        if !self.segments.is_empty() {
            let mut any = Condition::any();
            for segment in &self.segments {
                let pattern = format!("%,{},%", like_escaped(segment));
                any =
                    any.add(Expr::col(Column::Segments).like(LikeExpr::new(pattern).escape('\\')));
            }
            condition = condition.add(any);
        }
        if !self.branch_ids.is_empty() {
            condition = condition.add(Column::HomeBranchId.is_in(self.branch_ids.clone()));
        }
        if let Some(minimum) = self.min_aum_minor {
            condition = condition.add(Column::AumMinor.gte(minimum));
        }
        if self.upgrade_candidates {
            // Within the share below the next tier: next × (100 − p) / 100 ≤ avg < next.
            let share = 100 - i64::from(upgrade_percent);
            let floor = Expr::col(Column::NextTierAtMinor).mul(share).div(100);
            condition = condition
                .add(Column::NextTierAtMinor.is_not_null())
                .add(Expr::col(Column::AumMinor).lt(Expr::col(Column::NextTierAtMinor)))
                .add(Expr::col(Column::AumMinor).gte(floor));
        }
        condition
    }
}

/// `value` with LIKE's wildcards taken literally (`private_banking` must not
/// match `privateXbanking`), for a pattern with `ESCAPE '\'`.
fn like_escaped(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_names_each_bad_field() {
        let mut violations = Violations::new();
        let audience = pb::Audience {
            tier_min: 42,
            segments: vec![
                "payroll".into(),
                "".into(),
                "Payroll".into(),
                "payroll".into(),
            ],
            branch_ids: vec!["B-001".into(), "not a branch!".into()],
            min_aum: Some(pb::Money {
                minor_units: 100,
                currency: "USD".into(),
            }),
            include_do_not_contact: false,
            upgrade_candidates: false,
        };
        let parsed = Audience::parse(&mut violations, "audience", &audience);
        let fields: Vec<_> = violations.iter().map(|v| v.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "audience.tier_min",
                "audience.segments[1]",
                "audience.segments[2]",
                "audience.branch_ids[1]",
                "audience.min_aum"
            ]
        );
        assert_eq!(parsed.segments, ["payroll"]);
        assert_eq!(parsed.branch_ids, ["B-001"]);
    }
}
