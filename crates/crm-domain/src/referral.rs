//! Referral vocabulary and its state machine.

text_enum!(
    /// What the client needs, as the teller saw it.
    Need {
        WealthManagement => "wealth_management",
        LargeDeposit => "large_deposit",
        Loan => "loan",
        Payroll => "payroll",
        Insurance => "insurance",
        LargeCashAppointment => "large_cash_appointment",
        Other => "other",
    }
);

text_enum!(
    /// How urgent a piece of work is.
    Priority {
        Low => "low",
        Normal => "normal",
        High => "high",
        Urgent => "urgent",
    }
);

text_enum!(
    ReferralStatus {
        New => "new",
        Assigned => "assigned",
        Accepted => "accepted",
        Contacted => "contacted",
        Converted => "converted",
        Declined => "declined",
        Expired => "expired",
    }
);

text_enum!(
    WorkItemKind {
        Referral => "referral",
        Alert => "alert",
        CampaignTask => "campaign_task",
        FollowUp => "follow_up",
        Appointment => "appointment",
    }
);

text_enum!(
    /// What became of the money an alert was about, as the RM answered it.
    FundsOutcome {
        Kept => "kept",
        PartlyKept => "partly_kept",
        Gone => "gone",
    }
);

text_enum!(
    WorkItemState {
        Open => "open",
        Snoozed => "snoozed",
        Done => "done",
    }
);

impl ReferralStatus {
    /// Open referrals count toward an RM's load and block duplicates.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            ReferralStatus::New
                | ReferralStatus::Assigned
                | ReferralStatus::Accepted
                | ReferralStatus::Contacted
        )
    }

    pub const OPEN: [ReferralStatus; 4] = [
        ReferralStatus::New,
        ReferralStatus::Assigned,
        ReferralStatus::Accepted,
        ReferralStatus::Contacted,
    ];
}

/// A transition the state machine does not allow, naming where the referral stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("referral is {current}; cannot {action}")]
pub struct IllegalTransition {
    pub current: ReferralStatus,
    pub action: &'static str,
}

/// ASSIGNED → ACCEPTED; accepting twice is answered as the first time.
pub fn accept(current: ReferralStatus) -> Result<ReferralStatus, IllegalTransition> {
    match current {
        ReferralStatus::Assigned | ReferralStatus::Accepted => Ok(ReferralStatus::Accepted),
        _ => Err(IllegalTransition {
            current,
            action: "accept",
        }),
    }
}

text_enum!(
    /// What an RM reports after working a referral: `contacted` (reached the
    /// client; the conversation goes on), `converted`, `declined` (needs a reason),
    /// `unreachable` (tried and failed to reach the client: recorded, status
    /// unchanged).
    Outcome {
        Contacted => "contacted",
        Converted => "converted",
        Declined => "declined",
        Unreachable => "unreachable",
    }
);

/// The lifecycle: NEW → ASSIGNED → ACCEPTED → CONTACTED → CONVERTED | DECLINED,
/// and EXPIRED. An outcome needs the referral accepted first; CONVERTED and
/// DECLINED are final. Recording the same outcome again is answered as the first
/// time (a retry from a phone on a bad network).
pub fn record_outcome(
    current: ReferralStatus,
    outcome: Outcome,
) -> Result<ReferralStatus, IllegalTransition> {
    use ReferralStatus::*;
    let illegal = || IllegalTransition {
        current,
        action: "record an outcome",
    };
    match (current, outcome) {
        (Accepted | Contacted, Outcome::Contacted) => Ok(Contacted),
        (Accepted | Contacted, Outcome::Unreachable) => Ok(current),
        (Accepted | Contacted, Outcome::Converted) | (Converted, Outcome::Converted) => {
            Ok(Converted)
        }
        (Accepted | Contacted, Outcome::Declined) | (Declined, Outcome::Declined) => Ok(Declined),
        _ => Err(illegal()),
    }
}

/// Any open referral may move to another RM; it is theirs to accept again.
pub fn reassign(current: ReferralStatus) -> Result<ReferralStatus, IllegalTransition> {
    if current.is_open() {
        Ok(ReferralStatus::Assigned)
    } else {
        Err(IllegalTransition {
            current,
            action: "reassign",
        })
    }
}

/// An open referral nobody worked expires; a closed one stays as it ended.
pub fn expire(current: ReferralStatus) -> Result<ReferralStatus, IllegalTransition> {
    if current.is_open() {
        Ok(ReferralStatus::Expired)
    } else {
        Err(IllegalTransition {
            current,
            action: "expire",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ReferralStatus; 7] = [
        ReferralStatus::New,
        ReferralStatus::Assigned,
        ReferralStatus::Accepted,
        ReferralStatus::Contacted,
        ReferralStatus::Converted,
        ReferralStatus::Declined,
        ReferralStatus::Expired,
    ];

    /// Every (status, action) pair: the table of legal transitions, everything
    /// else refused naming the current status.
    #[test]
    fn every_transition_legal_and_illegal() {
        use ReferralStatus::*;
        let legal: &[(ReferralStatus, &str, ReferralStatus)] = &[
            (Assigned, "accept", Accepted),
            (Accepted, "accept", Accepted),
            (Accepted, "contacted", Contacted),
            (Contacted, "contacted", Contacted),
            (Accepted, "unreachable", Accepted),
            (Contacted, "unreachable", Contacted),
            (Accepted, "converted", Converted),
            (Contacted, "converted", Converted),
            (Converted, "converted", Converted),
            (Accepted, "declined", Declined),
            (Contacted, "declined", Declined),
            (Declined, "declined", Declined),
            (New, "reassign", Assigned),
            (Assigned, "reassign", Assigned),
            (Accepted, "reassign", Assigned),
            (Contacted, "reassign", Assigned),
            (New, "expire", Expired),
            (Assigned, "expire", Expired),
            (Accepted, "expire", Expired),
            (Contacted, "expire", Expired),
        ];
        let actions = [
            "accept",
            "contacted",
            "unreachable",
            "converted",
            "declined",
            "reassign",
            "expire",
        ];
        for status in ALL {
            for action in actions {
                let result = match action {
                    "accept" => accept(status),
                    "contacted" => record_outcome(status, Outcome::Contacted),
                    "unreachable" => record_outcome(status, Outcome::Unreachable),
                    "converted" => record_outcome(status, Outcome::Converted),
                    "declined" => record_outcome(status, Outcome::Declined),
                    "reassign" => reassign(status),
                    _ => expire(status),
                };
                let want = legal
                    .iter()
                    .find(|(from, name, _)| *from == status && *name == action)
                    .map(|(_, _, to)| *to);
                match (result, want) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{status} {action}"),
                    (Err(error), None) => {
                        assert_eq!(error.current, status);
                        assert!(error.to_string().contains(status.as_str()));
                    }
                    (result, want) => panic!("{status} {action}: got {result:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn only_an_assigned_referral_can_be_accepted() {
        assert_eq!(
            accept(ReferralStatus::Assigned),
            Ok(ReferralStatus::Accepted)
        );
        assert_eq!(
            accept(ReferralStatus::Accepted),
            Ok(ReferralStatus::Accepted)
        );
        for status in [
            ReferralStatus::New,
            ReferralStatus::Contacted,
            ReferralStatus::Converted,
            ReferralStatus::Declined,
            ReferralStatus::Expired,
        ] {
            let error = accept(status).err();
            assert_eq!(error.map(|e| e.current), Some(status));
        }
    }

    #[test]
    fn stored_text_round_trips() {
        for status in ReferralStatus::ALL {
            assert_eq!(ReferralStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(Need::parse("loan"), Some(Need::Loan));
        assert_eq!(Priority::parse("nope"), None);
    }
}
