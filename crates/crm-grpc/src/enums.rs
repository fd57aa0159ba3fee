//! Each domain enum and its protobuf twin. The wire's `*_UNSPECIFIED = 0` and
//! numbers no variant has are `None` on the way in (the caller answers
//! INVALID_ARGUMENT naming the field); every domain value has a wire value.

use crm_domain::Role;
use crm_domain::client::{ClientKind, InteractionChannel};
use crm_domain::referral::{Need, Outcome, Priority, ReferralStatus, WorkItemKind, WorkItemState};
use crm_domain::tier::Tier;
use crm_proto::v1 as pb;

/// A domain enum with a protobuf twin.
pub trait WireEnum: Sized + Copy {
    type Proto: Copy + Into<i32>;

    fn to_proto(self) -> Self::Proto;

    /// The domain value of a wire number; `None` for UNSPECIFIED or unknown.
    fn from_proto(value: i32) -> Option<Self>;

    /// The wire number, as a message field holds it.
    fn to_wire(self) -> i32 {
        self.to_proto().into()
    }
}

/// `wire_enum!(Domain <=> pb::Proto { Variant, … })` for twins whose variants share
/// their names.
macro_rules! wire_enum {
    ($domain:ty => $proto:ident { $($variant:ident),+ $(,)? }) => {
        impl WireEnum for $domain {
            type Proto = pb::$proto;

            fn to_proto(self) -> pb::$proto {
                match self {
                    $(<$domain>::$variant => pb::$proto::$variant),+
                }
            }

            fn from_proto(value: i32) -> Option<Self> {
                match pb::$proto::try_from(value).ok()? {
                    pb::$proto::Unspecified => None,
                    $(pb::$proto::$variant => Some(<$domain>::$variant)),+
                }
            }
        }
    };
}

wire_enum!(Need => Need {
    WealthManagement,
    LargeDeposit,
    Loan,
    Payroll,
    Insurance,
    LargeCashAppointment,
    Other,
});
wire_enum!(Priority => Priority { Low, Normal, High, Urgent });
wire_enum!(ReferralStatus => ReferralStatus {
    New,
    Assigned,
    Accepted,
    Contacted,
    Converted,
    Declined,
    Expired,
});
wire_enum!(Outcome => ReferralOutcome { Contacted, Converted, Declined, Unreachable });
wire_enum!(WorkItemKind => WorkItemKind { Referral, Alert, CampaignTask, FollowUp, Appointment });
wire_enum!(WorkItemState => WorkItemState { Open, Snoozed, Done });
wire_enum!(Tier => Tier { Mass, Wealth, Hnw, Private });
wire_enum!(Role => StaffRole { Teller, Rm, BranchManager, CampaignAdmin, System });
wire_enum!(ClientKind => ClientKind { Individual, Corporate });
wire_enum!(InteractionChannel => InteractionChannel { Phone, Visit, Branch, Message, Email });

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: WireEnum + PartialEq + std::fmt::Debug>(all: &[T]) {
        for value in all {
            assert_eq!(T::from_proto(value.to_wire()), Some(*value));
        }
        assert_eq!(T::from_proto(0), None, "UNSPECIFIED is no value");
        assert_eq!(T::from_proto(999), None, "an unknown number is no value");
    }

    #[test]
    fn every_enum_round_trips_and_unspecified_is_rejected() {
        round_trips(Need::ALL);
        round_trips(Priority::ALL);
        round_trips(ReferralStatus::ALL);
        round_trips(Outcome::ALL);
        round_trips(WorkItemKind::ALL);
        round_trips(WorkItemState::ALL);
        round_trips(&[Tier::Mass, Tier::Wealth, Tier::Hnw, Tier::Private]);
        round_trips(&Role::ALL);
        round_trips(ClientKind::ALL);
        round_trips(InteractionChannel::ALL);
    }
}
