//! Referral vocabulary and its state machine.

use std::fmt;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and logged text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(value: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
