//! Tiers follow the 30-day daily-average AUM through the tier rule and its
//! hysteresis ([`crm_domain::tier::TierPolicy`]); a change is announced as
//! `client.tier_changed` in the transaction that stores it.

use crate::store::client;
use chrono::Utc;
use crm_domain::messages::{TIER_CHANGED, TierChanged};
use crm_domain::tier::{Tier, TierPolicy};
use sea_orm::ConnectionTrait;

use crate::SERVICE;
use crate::error::Result;

/// The tier after a new average; `current` is the stored tier (None: new).
pub(crate) fn next_tier(policy: &TierPolicy, current: Option<Tier>, aum_minor: i64) -> Tier {
    policy.next_tier(current, aum_minor)
}

/// Announces `stored`'s tier if it differs from `previous`.
pub(crate) async fn announce_if_changed(
    transaction: &impl ConnectionTrait,
    stored: &client::Model,
    previous: Option<Tier>,
) -> Result<()> {
    if previous == Some(stored.tier) {
        return Ok(());
    }
    let message = TierChanged {
        client_id: stored.client_id.clone(),
        home_branch_id: stored.home_branch_id.clone(),
        previous_tier: previous.map(|tier| tier.as_str().to_owned()),
        tier: stored.tier.as_str().to_owned(),
        aum_daily_avg_minor: stored.aum_minor_units,
        currency: stored.aum_currency.clone(),
        primary_rm_id: stored.primary_rm_id.clone(),
        do_not_contact: stored.do_not_contact,
        changed_at: Utc::now(),
    };
    crm_bus::outbox::enqueue_event(transaction, SERVICE, TIER_CHANGED, TIER_CHANGED, &message)
        .await?;
    Ok(())
}
