//! A tier change is work for the RM: an upgrade gets a welcome follow-up (the
//! client now qualifies for more), a downgrade a retention follow-up (find out
//! why the money left, and win it back). Asked of the RM work queue as
//! `work_items.requested`; a client who asked not to be contacted gets none.

use crm_bus::HandlerError;
use crm_domain::Money;
use crm_domain::messages::{
    RequestedWorkItem, TierChanged, WORK_ITEMS_REQUESTED, WorkItemsRequested,
};
use crm_domain::referral::{Priority, WorkItemKind};
use crm_domain::tier::Tier;
use sea_orm::DatabaseTransaction;

use crate::SERVICE;

/// The follow-up a tier change asks for, if any; `payroll` when the bank receives
/// the client's salary.
pub fn follow_up(change: &TierChanged, payroll: bool) -> Result<Option<RequestedWorkItem>, String> {
    let tier =
        Tier::parse(&change.tier).ok_or_else(|| format!("unknown tier {:?}", change.tier))?;
    let Some(previous) = change.previous_tier.as_deref() else {
        return Ok(None); // a new client: opening the account was the contact
    };
    let previous = Tier::parse(previous).ok_or_else(|| format!("unknown tier {previous:?}"))?;
    if change.do_not_contact || previous == tier {
        return Ok(None);
    }
    let average = Money::parse(change.aum_daily_avg_minor, &change.currency)
        .map(|money| money.to_string())
        .unwrap_or_else(|_| change.aum_daily_avg_minor.to_string());
    let (title, detail, priority) = if payroll && previous == Tier::Mass && tier == Tier::Wealth {
        (
            "Payroll client now wealth: cultivation follow-up".to_owned(),
            format!(
                "Rule: payroll client crossing into wealth. The client's salary is paid here and \
                 the 30-day daily average is now {average} ({tier}). Call to turn the salary \
                 account into a wealth relationship: savings plan, deposits, funds."
            ),
            Priority::Normal,
        )
    } else if tier > previous {
        (
            format!("Welcome to {tier}: upgrade follow-up"),
            format!(
                "Rule: tier upgrade. The 30-day daily average is {average}, now {tier} (was {previous}). \
                 Call to welcome the client and present what {tier} clients receive."
            ),
            Priority::Normal,
        )
    } else {
        (
            format!("Retention: down to {tier}"),
            format!(
                "Rule: tier downgrade. The 30-day daily average fell to {average}, now {tier} (was {previous}). \
                 Call to learn why the funds moved and to win them back."
            ),
            Priority::High,
        )
    };
    Ok(Some(RequestedWorkItem {
        source_key: format!(
            "tier:{}:{}:{}",
            change.client_id,
            tier.as_str(),
            change.changed_at.timestamp_micros()
        ),
        kind: WorkItemKind::FollowUp,
        client_id: change.client_id.clone(),
        title,
        detail,
        priority,
        due_at: Some(change.changed_at + chrono::Duration::days(7)),
        rm_id: change.primary_rm_id.clone(),
        home_branch_id: Some(change.home_branch_id.clone()),
    }))
}

pub async fn apply(
    transaction: &DatabaseTransaction,
    change: TierChanged,
) -> Result<(), HandlerError> {
    let payroll = crate::payroll::is_payroll_client(transaction, &change.client_id).await?;
    let Some(item) = follow_up(&change, payroll).map_err(HandlerError::Poison)? else {
        return Ok(());
    };
    let request = WorkItemsRequested {
        requested_by: SERVICE.to_owned(),
        items: vec![item],
    };
    crm_bus::outbox::enqueue_event(
        transaction,
        SERVICE,
        WORK_ITEMS_REQUESTED,
        WORK_ITEMS_REQUESTED,
        &request,
    )
    .await?;
    Ok(())
}
