//! The referral routing chain: client's primary RM → teller's paired RM →
//! least-loaded available RM of the branch → the branch manager (escalated).
//!
//! Pure: the caller loads the candidates, this decides and explains. Every candidate
//! considered is recorded in order with why it was taken or passed over, so an RM,
//! a manager or an auditor can read the decision back.

use chrono::{DateTime, Utc};

use crate::ids::{BranchId, StaffId};
use crate::role::Role;

/// Bumped whenever the rules below change meaning; stored with each decision.
pub const RULE_VERSION: &str = "routing/v1";

/// What routing needs to know of one staff member at decision time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub staff_id: StaffId,
    pub role: Role,
    pub branch_id: BranchId,
    pub active: bool,
    pub capacity: i32,
    pub out_of_office_until: Option<DateTime<Utc>>,
    /// Open referrals assigned to this person now.
    pub open_referrals: i64,
    /// When this person was last given a referral (ties go to the longest idle).
    pub last_assigned_at: Option<DateTime<Utc>>,
}

/// The step of the chain at which a candidate was considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    PrimaryRm,
    PairedRm,
    BranchPool,
    BranchManager,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::PrimaryRm => "primary_rm",
            Step::PairedRm => "paired_rm",
            Step::BranchPool => "branch_pool",
            Step::BranchManager => "branch_manager",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsideredCandidate {
    pub staff_id: String,
    pub step: String,
    pub taken: bool,
    pub reason: String,
}

/// The stored record of one routing decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoutingDecision {
    pub rule_version: String,
    pub candidates: Vec<ConsideredCandidate>,
    pub chosen_rm_id: String,
    /// In words, why the chosen person got it.
    pub reason: String,
    pub escalated: bool,
    pub decided_at: DateTime<Utc>,
}

/// Everything the chain looks at for one referral.
#[derive(Debug, Clone)]
pub struct RoutingRequest<'a> {
    pub branch_id: &'a BranchId,
    /// The referring teller, whose paired RM is the chain's second step; none for
    /// work another service asks for.
    pub teller_id: Option<&'a StaffId>,
    pub primary_rm: Option<&'a Candidate>,
    pub paired_rm: Option<&'a Candidate>,
    /// Staff of the branch; those who are not RMs are ignored by the pool.
    pub branch_staff: &'a [Candidate],
    pub now: DateTime<Utc>,
}

/// The chain has nobody to give a referral to yet: no RM of the branch can take it
/// and routing knows of no active branch manager there (in the distributed mode,
/// often a branch set up moments ago whose staff routing's copy has not heard of).
/// The referral is not refused: it waits, and is routed as soon as someone is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("branch {branch_id} has no active branch manager to escalate to")]
pub struct NobodyToRoute {
    pub branch_id: BranchId,
    /// Who was considered and why each was passed over.
    pub considered: Vec<ConsideredCandidate>,
    pub decided_at: DateTime<Utc>,
}

impl NobodyToRoute {
    /// Why the referral waits, in words, for its history and `routing_reason`.
    pub fn waiting_reason(&self) -> String {
        format!(
            "waiting for routing: branch {} has no RM available and no active branch \
             manager yet; routed as soon as someone is",
            self.branch_id
        )
    }

    /// The stored record of the attempt: everyone considered, nobody chosen.
    pub fn waiting_decision(&self) -> RoutingDecision {
        RoutingDecision {
            rule_version: RULE_VERSION.to_owned(),
            candidates: self.considered.clone(),
            chosen_rm_id: String::new(),
            reason: self.waiting_reason(),
            escalated: false,
            decided_at: self.decided_at,
        }
    }
}

/// Why a candidate cannot take a referral now, if they cannot.
fn unavailable_because(candidate: &Candidate, now: DateTime<Utc>) -> Option<String> {
    if !candidate.active {
        return Some("inactive".to_owned());
    }
    if candidate
        .out_of_office_until
        .is_some_and(|until| until > now)
    {
        return Some("out of office".to_owned());
    }
    if candidate.open_referrals >= i64::from(candidate.capacity) {
        return Some(format!(
            "at capacity {}/{}",
            candidate.open_referrals, candidate.capacity
        ));
    }
    None
}

pub fn route(request: &RoutingRequest<'_>) -> Result<RoutingDecision, NobodyToRoute> {
    let mut considered = Vec::new();
    let mut record = |candidate: &Candidate, step: Step, taken: bool, reason: String| {
        considered.push(ConsideredCandidate {
            staff_id: candidate.staff_id.to_string(),
            step: step.as_str().to_owned(),
            taken,
            reason,
        });
    };

    let named_steps = [
        (
            Step::PrimaryRm,
            request.primary_rm,
            "primary RM of client".to_owned(),
        ),
        (
            Step::PairedRm,
            request.paired_rm,
            match request.teller_id {
                Some(teller_id) => format!("paired RM of teller {teller_id}"),
                None => "paired RM".to_owned(),
            },
        ),
    ];
    for (step, candidate, reason) in named_steps {
        let Some(candidate) = candidate else { continue };
        match unavailable_because(candidate, request.now) {
            None => {
                record(candidate, step, true, reason.clone());
                return Ok(decision(considered, candidate, reason, false, request.now));
            }
            Some(why) => record(candidate, step, false, why),
        }
    }

    // The branch pool: RMs of the branch, least open referrals first; ties go to who
    // was assigned least recently (never assigned first), then by id so the order is
    // the same on every replica.
    let mut pool: Vec<&Candidate> = request
        .branch_staff
        .iter()
        .filter(|c| c.role == Role::Rm && &c.branch_id == request.branch_id)
        .collect();
    pool.sort_by(|a, b| {
        a.open_referrals
            .cmp(&b.open_referrals)
            .then(a.last_assigned_at.cmp(&b.last_assigned_at))
            .then(a.staff_id.cmp(&b.staff_id))
    });
    let mut chosen_from_pool = None;
    for candidate in pool {
        if chosen_from_pool.is_some() {
            break;
        }
        match unavailable_because(candidate, request.now) {
            None => chosen_from_pool = Some(candidate),
            Some(why) => record(candidate, Step::BranchPool, false, why),
        }
    }
    if let Some(candidate) = chosen_from_pool {
        let reason = format!("least-loaded RM in branch {}", request.branch_id);
        record(candidate, Step::BranchPool, true, reason.clone());
        return Ok(decision(considered, candidate, reason, false, request.now));
    }

    let manager = request
        .branch_staff
        .iter()
        .filter(|c| c.role == Role::BranchManager && c.active && &c.branch_id == request.branch_id)
        .min_by(|a, b| a.staff_id.cmp(&b.staff_id));
    match manager {
        Some(manager) => {
            let reason = "escalated to branch manager: no RM available".to_owned();
            record(manager, Step::BranchManager, true, reason.clone());
            Ok(decision(considered, manager, reason, true, request.now))
        }
        None => Err(NobodyToRoute {
            branch_id: request.branch_id.clone(),
            considered,
            decided_at: request.now,
        }),
    }
}

impl RoutingDecision {
    /// Whether the chain named who gets it — the client's primary RM or the
    /// teller's paired RM — rather than choosing in the branch pool by load. A
    /// named choice does not depend on what else is routed in the branch at the
    /// same moment, so it needs no branch-wide serialisation.
    pub fn is_named(&self) -> bool {
        self.candidates.iter().any(|candidate| {
            candidate.taken
                && (candidate.step == Step::PrimaryRm.as_str()
                    || candidate.step == Step::PairedRm.as_str())
        })
    }
}

fn decision(
    candidates: Vec<ConsideredCandidate>,
    chosen: &Candidate,
    reason: String,
    escalated: bool,
    now: DateTime<Utc>,
) -> RoutingDecision {
    RoutingDecision {
        rule_version: RULE_VERSION.to_owned(),
        candidates,
        chosen_rm_id: chosen.staff_id.to_string(),
        reason,
        escalated,
        decided_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn id(value: &str) -> StaffId {
        StaffId::parse(value).unwrap_or_else(|_| unreachable!("test id {value}"))
    }

    fn branch() -> BranchId {
        BranchId::parse("B-001").unwrap_or_else(|_| unreachable!())
    }

    fn rm(staff_id: &str, open: i64) -> Candidate {
        Candidate {
            staff_id: id(staff_id),
            role: Role::Rm,
            branch_id: branch(),
            active: true,
            capacity: 10,
            out_of_office_until: None,
            open_referrals: open,
            last_assigned_at: None,
        }
    }

    fn manager() -> Candidate {
        Candidate {
            role: Role::BranchManager,
            ..rm("M-001", 0)
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn route_with(
        primary: Option<&Candidate>,
        paired: Option<&Candidate>,
        staff: &[Candidate],
    ) -> Result<RoutingDecision, NobodyToRoute> {
        let branch = branch();
        let teller = id("T-0001");
        route(&RoutingRequest {
            branch_id: &branch,
            teller_id: Some(&teller),
            primary_rm: primary,
            paired_rm: paired,
            branch_staff: staff,
            now: now(),
        })
    }

    #[test]
    fn the_primary_rm_of_the_client_comes_first() {
        let primary = rm("RM-1", 3);
        let paired = rm("RM-2", 0);
        let decision = route_with(Some(&primary), Some(&paired), &[manager()])
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "RM-1");
        assert_eq!(decision.reason, "primary RM of client");
        assert_eq!(decision.candidates.len(), 1);
        assert!(!decision.escalated);
        assert_eq!(decision.rule_version, RULE_VERSION);
    }

    #[test]
    fn only_the_primary_and_paired_rm_are_named_choices() {
        let named = |primary: Option<&Candidate>, paired: Option<&Candidate>| {
            route_with(primary, paired, &[rm("RM-3", 0), manager()])
                .map(|decision| decision.is_named())
                .unwrap_or_else(|e| unreachable!("{e}"))
        };
        let busy = rm("RM-1", 10);
        assert!(named(Some(&rm("RM-1", 0)), None), "primary RM");
        assert!(named(Some(&busy), Some(&rm("RM-2", 0))), "paired RM");
        assert!(!named(Some(&busy), None), "the pool");
        assert!(!named(None, None), "the pool");
        let escalated =
            route_with(None, None, &[manager()]).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!escalated.is_named(), "the branch manager");
    }

    #[test]
    fn an_inactive_primary_rm_passes_to_the_tellers_pair() {
        let primary = Candidate {
            active: false,
            ..rm("RM-1", 0)
        };
        let paired = rm("RM-2", 0);
        let decision =
            route_with(Some(&primary), Some(&paired), &[]).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "RM-2");
        assert_eq!(decision.reason, "paired RM of teller T-0001");
        assert_eq!(decision.candidates[0].reason, "inactive");
        assert!(!decision.candidates[0].taken);
        assert!(decision.candidates[1].taken);
    }

    #[test]
    fn out_of_office_is_passed_over_until_it_ends() {
        let away = Candidate {
            out_of_office_until: Some(now() + Duration::hours(1)),
            ..rm("RM-1", 0)
        };
        let decision =
            route_with(Some(&away), None, &[rm("RM-3", 0)]).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.candidates[0].reason, "out of office");
        assert_eq!(decision.chosen_rm_id, "RM-3");

        let back = Candidate {
            out_of_office_until: Some(now() - Duration::hours(1)),
            ..rm("RM-1", 0)
        };
        let decision = route_with(Some(&back), None, &[]).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "RM-1");
    }

    #[test]
    fn an_rm_at_capacity_is_passed_over_with_the_count() {
        let full = Candidate {
            capacity: 12,
            ..rm("RM-2", 12)
        };
        let decision =
            route_with(None, Some(&full), &[rm("RM-3", 5)]).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.candidates[0].reason, "at capacity 12/12");
        assert_eq!(decision.chosen_rm_id, "RM-3");
        assert_eq!(decision.reason, "least-loaded RM in branch B-001");
    }

    #[test]
    fn the_pool_takes_the_least_loaded_rm() {
        let staff = [rm("RM-1", 4), rm("RM-2", 1), rm("RM-3", 2), manager()];
        let decision = route_with(None, None, &staff).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "RM-2");
    }

    #[test]
    fn pool_ties_go_to_who_was_assigned_least_recently_then_by_id() {
        let recent = Candidate {
            last_assigned_at: Some(now()),
            ..rm("RM-1", 1)
        };
        let earlier = Candidate {
            last_assigned_at: Some(now() - Duration::minutes(5)),
            ..rm("RM-2", 1)
        };
        let decision = route_with(None, None, &[recent.clone(), earlier])
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "RM-2");

        let never_a = rm("RM-9", 1);
        let never_b = rm("RM-8", 1);
        let decision = route_with(None, None, &[recent, never_a, never_b])
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "RM-8");
    }

    #[test]
    fn staff_of_other_branches_and_roles_are_not_in_the_pool() {
        let elsewhere = Candidate {
            branch_id: BranchId::parse("B-002").unwrap_or_else(|_| unreachable!()),
            ..rm("RM-7", 0)
        };
        let teller = Candidate {
            role: Role::Teller,
            ..rm("T-0001", 0)
        };
        let decision = route_with(None, None, &[elsewhere, teller, manager()])
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "M-001");
    }

    #[test]
    fn with_no_rm_available_the_branch_manager_gets_it_escalated() {
        let staff = [
            Candidate {
                capacity: 1,
                ..rm("RM-1", 1)
            },
            manager(),
        ];
        let decision = route_with(None, None, &staff).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(decision.chosen_rm_id, "M-001");
        assert!(decision.escalated);
        assert_eq!(
            decision.reason,
            "escalated to branch manager: no RM available"
        );
        let reasons: Vec<_> = decision
            .candidates
            .iter()
            .map(|c| c.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            vec![
                "at capacity 1/1",
                "escalated to branch manager: no RM available"
            ]
        );
    }

    #[test]
    fn a_branch_without_a_manager_waits_with_everyone_considered() {
        let result = route_with(
            None,
            None,
            &[Candidate {
                active: false,
                ..rm("RM-1", 0)
            }],
        );
        let Err(nobody) = result else {
            panic!("routed with nobody active: {result:?}")
        };
        assert_eq!(nobody.branch_id, branch());
        let waiting = nobody.waiting_decision();
        assert_eq!(waiting.chosen_rm_id, "");
        assert!(
            waiting.reason.starts_with("waiting for routing"),
            "{}",
            waiting.reason
        );
        assert_eq!(waiting.candidates.len(), 1);
        assert_eq!(
            (
                waiting.candidates[0].taken,
                waiting.candidates[0].reason.as_str()
            ),
            (false, "inactive")
        );
    }
}
