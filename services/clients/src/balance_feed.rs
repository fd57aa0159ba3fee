//! The tier follows the balance feed: the events service's trailing 30-day
//! daily average (`client.balance_average_changed`) becomes the client's
//! `aum_daily_avg`, and the tier rule with its hysteresis decides the tier. Once a
//! client has a balance feed it is the average's one writer — UpsertClient no
//! longer moves it — so the tier can't flap between two sources.

use crate::store::client;
use crm_bus::HandlerError;
use crm_domain::messages::BalanceAverageChanged;
use crm_domain::tier::TierPolicy;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QuerySelect,
};

use crate::tiering;

/// Applies the feed's average to the client, unless news as new was applied.
pub async fn apply(
    transaction: &DatabaseTransaction,
    tiers: &TierPolicy,
    message: BalanceAverageChanged,
) -> Result<(), HandlerError> {
    if message.currency != "CNY" {
        return Err(HandlerError::Poison(format!(
            "a daily average in {}; tiers count CNY",
            message.currency
        )));
    }
    let Some(current) = client::Entity::find_by_id(message.client_id.as_str())
        .lock_exclusive()
        .one(transaction)
        .await?
    else {
        // Not in the book yet: the next average after the book opens it applies.
        tracing::warn!(client_id = %message.client_id, "a daily average for a client the book does not hold");
        return Ok(());
    };
    if current
        .aum_feed_updated_at
        .is_some_and(|applied| applied >= message.updated_at)
    {
        return Ok(());
    }
    let previous_tier = current.tier;
    let tier = tiering::next_tier(tiers, Some(previous_tier), message.daily_avg_minor);
    let mut row = current.into_active_model();
    row.aum_minor_units = Set(message.daily_avg_minor);
    row.aum_currency = Set(message.currency);
    row.aum_feed_updated_at = Set(Some(message.updated_at));
    row.tier = Set(tier);
    row.updated_at = Set(chrono::Utc::now());
    let stored = row.update(transaction).await?;
    tiering::announce_if_changed(transaction, &stored, Some(previous_tier))
        .await
        .map_err(|error| HandlerError::Failed(error.to_string()))?;
    crate::client_profile::announce(transaction, &stored, &tiers.thresholds)
        .await
        .map_err(|error| HandlerError::Failed(error.to_string()))?;
    Ok(())
}
