//! Each domain enum and its protobuf twin. The wire's `*_UNSPECIFIED = 0` and
//! numbers no variant has are `None` on the way in (the caller answers
//! INVALID_ARGUMENT naming the field); every domain value has a wire value.

use crm_domain::Role;
use crm_domain::campaign::{CampaignKind, CampaignStatus};
use crm_domain::client::{ClientKind, InteractionChannel};
use crm_domain::referral::{
    FundsOutcome, Need, Outcome, Priority, ReferralStatus, WorkItemKind, WorkItemState,
};
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

/// A repeated enum field used as a filter (`states`, `kinds`): each value once, in
/// the order named. More entries than the enum has values can only be repeats or
/// junk: refused with one violation, not one per entry, so a request of a million
/// entries costs one line of answer. The first unknown value is named.
pub fn enum_filter<T: WireEnum + PartialEq>(
    violations: &mut crm_domain::Violations,
    field: &str,
    values: &[i32],
    variants: usize,
) -> Vec<T> {
    if values.len() > variants {
        violations.add(field, format!("must name at most {variants} values"));
        return Vec::new();
    }
    let mut parsed = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        match T::from_proto(*value) {
            Some(value) if parsed.contains(&value) => {}
            Some(value) => parsed.push(value),
            None => {
                violations.add(format!("{field}[{index}]"), "is not a known value");
                break;
            }
        }
    }
    parsed
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
wire_enum!(FundsOutcome => FundsOutcome { Kept, PartlyKept, Gone });
wire_enum!(CampaignKind => CampaignKind { QuarterlyHnw, Annual, Maturity, ContactCadence, Custom });
wire_enum!(CampaignStatus => CampaignStatus { Draft, Launched, Closed, Cancelled });
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
    fn a_filter_names_each_value_once_and_a_flood_is_one_violation() {
        let mut violations = crm_domain::Violations::new();
        let open = WorkItemState::Open.to_wire();
        let done = WorkItemState::Done.to_wire();
        let states: Vec<WorkItemState> =
            enum_filter(&mut violations, "states", &[open, done, open], 3);
        assert_eq!(states, [WorkItemState::Open, WorkItemState::Done]);
        assert!(violations.is_empty());
        let flood = vec![open; 1_000_000];
        let none: Vec<WorkItemState> = enum_filter(&mut violations, "states", &flood, 3);
        assert!(none.is_empty());
        let junk: Vec<WorkItemState> = enum_filter(&mut violations, "kinds", &[open, 0, 99], 3);
        assert_eq!(junk, [WorkItemState::Open]);
        let fields: Vec<_> = violations.iter().map(|v| v.field.clone()).collect();
        assert_eq!(fields, ["states", "kinds[1]"]);
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
        round_trips(CampaignKind::ALL);
        round_trips(CampaignStatus::ALL);
    }
}
