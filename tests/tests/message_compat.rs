//! Message payloads are versioned like the API: replicas of two releases run side
//! by side during a rolling upgrade, so a reader of this release takes what the
//! previous release wrote, and a reader ignores fields a later release adds.
//! `tests/message-baseline/v1.json` holds every message type as the previous
//! release wrote it; it changes only in a commit that says it breaks compatibility
//! on purpose (crm-domain's `messages` module says how to change a payload).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::messages::{self as m, ALL_MESSAGE_TYPES};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn baseline() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/message-baseline/v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Decodes `payload` as today's type, and encodes it again.
fn round_trip<T: DeserializeOwned + serde::Serialize>(payload: &Value) -> Result<Value, String> {
    let decoded: T = serde_json::from_value(payload.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(decoded).map_err(|e| e.to_string())
}

/// Today's reader of `message_type`, as the consuming services decode it.
fn read_as_today(message_type: &str, payload: &Value) -> Result<Value, String> {
    match message_type {
        m::STAFF_CHANGED => round_trip::<m::StaffChanged>(payload),
        m::PAIR_CHANGED => round_trip::<m::PairChanged>(payload),
        m::BRANCH_CHANGED => round_trip::<m::BranchChanged>(payload),
        m::COVERAGE_CHANGED => round_trip::<m::CoverageChanged>(payload),
        m::TIER_CHANGED => round_trip::<m::TierChanged>(payload),
        m::INTERACTION_LOGGED => round_trip::<m::InteractionLogged>(payload),
        m::REFERRAL_ASSIGNED
        | m::REFERRAL_ACCEPTED
        | m::REFERRAL_OUTCOME_RECORDED
        | m::REFERRAL_REASSIGNED
        | m::REFERRAL_ESCALATED
        | m::REFERRAL_EXPIRED
        | m::REFERRAL_LINKED => round_trip::<m::ReferralEvent>(payload),
        m::WORK_ITEM_CHANGED => round_trip::<crm_referrals::WorkItemMessage>(payload),
        m::BALANCE_AVERAGE_CHANGED => round_trip::<m::BalanceAverageChanged>(payload),
        m::PAYROLL_DETECTED => round_trip::<m::PayrollDetected>(payload),
        m::WORK_ITEMS_REQUESTED => round_trip::<m::WorkItemsRequested>(payload),
        m::WORK_ITEM_COMPLETED => round_trip::<m::WorkItemCompleted>(payload),
        m::WORK_ITEMS_ASSIGNED => round_trip::<m::WorkItemsAssigned>(payload),
        m::WORK_ITEMS_WITHDRAWN => round_trip::<m::WorkItemsWithdrawn>(payload),
        m::CLIENT_PROFILES_CHANGED => round_trip::<m::ClientProfilesChanged>(payload),
        m::CAMPAIGN_TASKS_REQUESTED => round_trip::<m::CampaignTasksRequested>(payload),
        m::AUDIT_RECORDED => round_trip::<crm_audit::AuditLine>(payload),
        other => Err(format!("no reader for {other}")),
    }
}

#[test]
fn every_message_type_has_a_baseline() {
    let baseline = baseline();
    let messages = baseline["messages"].as_object().unwrap();
    for message_type in ALL_MESSAGE_TYPES {
        assert!(
            messages.contains_key(*message_type),
            "{message_type} has no entry in tests/message-baseline/v1.json"
        );
    }
    assert_eq!(
        messages.len(),
        ALL_MESSAGE_TYPES.len(),
        "a baseline entry for no type"
    );
}

/// A new reader takes the previous release's message, and writes it again with
/// every field it had: nothing renamed, retyped or dropped.
#[test]
fn todays_readers_take_what_the_previous_release_wrote() {
    let baseline = baseline();
    for (message_type, payload) in baseline["messages"].as_object().unwrap() {
        let again = read_as_today(message_type, payload)
            .unwrap_or_else(|error| panic!("{message_type} no longer reads: {error}"));
        for field in payload.as_object().unwrap().keys() {
            assert!(
                again.get(field).is_some(),
                "{message_type}: today's type dropped `{field}`"
            );
        }
    }
    // Older still: a completion from before typed outcomes and conversions.
    for (message_type, payload) in baseline["older"].as_object().unwrap() {
        read_as_today(message_type, payload)
            .unwrap_or_else(|error| panic!("older {message_type} no longer reads: {error}"));
    }
}

/// An old reader during the upgrade meets the new release's messages: fields it
/// doesn't know are ignored, not refused (which would dead-letter them).
#[test]
fn readers_ignore_fields_a_later_release_adds() {
    let baseline = baseline();
    for (message_type, payload) in baseline["messages"].as_object().unwrap() {
        let mut newer = payload.clone();
        newer
            .as_object_mut()
            .unwrap()
            .insert("added_by_a_later_release".into(), Value::from(1));
        read_as_today(message_type, &newer).unwrap_or_else(|error| {
            panic!("{message_type} refuses a field it doesn't know: {error}")
        });
    }
}

/// The check bites: a payload missing a field today's reader requires is refused.
#[test]
fn a_removed_field_is_caught() {
    let baseline = baseline();
    let mut broken = baseline["messages"][m::COVERAGE_CHANGED].clone();
    broken.as_object_mut().unwrap().remove("client_id");
    assert!(read_as_today(m::COVERAGE_CHANGED, &broken).is_err());
}
