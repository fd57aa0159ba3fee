//! What campaign audiences are chosen by (`client.profiles_changed`): tier, daily
//! average, segments, coverage, branch, do-not-contact, consent and last contact —
//! never a name or contact detail. Sent for every change of a client in the
//! changing transaction, and for the whole book by `crm jobs republish-clients`,
//! a thousand clients per message, so the campaigns service can rebuild its
//! projection from scratch.

use crm_domain::messages::{CLIENT_PROFILES_CHANGED, ClientProfile, ClientProfilesChanged};
use crm_domain::tier::TierThresholds;
use crm_store::Db;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use crate::SERVICE;
use crate::error::Result;
use crate::store::client;

/// Clients per message (and per transaction) of a republish: ~250 bytes each.
const PAGE: u64 = 1_000;

pub(crate) fn profile_of(model: &client::Model, tiers: &TierThresholds) -> ClientProfile {
    ClientProfile {
        client_id: model.client_id.clone(),
        home_branch_id: model.home_branch_id.clone(),
        tier: model.tier.as_str().to_owned(),
        aum_daily_avg_minor: model.aum_minor_units,
        currency: model.aum_currency.clone(),
        segments: serde_json::from_str(&model.segments).unwrap_or_default(),
        primary_rm_id: model.primary_rm_id.clone(),
        do_not_contact: model.do_not_contact,
        marketing_consent: model.marketing_consent,
        last_contact_at: model.last_contact_at,
        next_tier_at_minor: tiers.next_above(model.tier),
        updated_at: model.updated_at,
    }
}

/// Announces `model`'s profile in the caller's transaction.
pub(crate) async fn announce(
    connection: &impl ConnectionTrait,
    model: &client::Model,
    tiers: &TierThresholds,
) -> Result<()> {
    let message = ClientProfilesChanged {
        profiles: vec![profile_of(model, tiers)],
    };
    crm_bus::outbox::enqueue_event(
        connection,
        SERVICE,
        CLIENT_PROFILES_CHANGED,
        CLIENT_PROFILES_CHANGED,
        &message,
    )
    .await?;
    Ok(())
}

/// Writes every client's profile into the outbox, a page per message and per
/// transaction, in client id order; the serving process's relay publishes them.
/// How many clients it queued.
pub async fn republish_clients(db: &Db, tiers: &TierThresholds) -> Result<u64> {
    let total = client::Entity::find().count(db).await?;
    tracing::info!(total, "republishing the client book's profiles");
    let mut sent = 0;
    let mut after = String::new();
    loop {
        let page = client::Entity::find()
            .filter(client::Column::ClientId.gt(after.as_str()))
            .order_by_asc(client::Column::ClientId)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after.clone_from(&last.client_id);
        let message = ClientProfilesChanged {
            profiles: page.iter().map(|model| profile_of(model, tiers)).collect(),
        };
        let transaction = db.begin().await?;
        crm_bus::outbox::enqueue_event(
            &transaction,
            SERVICE,
            CLIENT_PROFILES_CHANGED,
            CLIENT_PROFILES_CHANGED,
            &message,
        )
        .await?;
        transaction.commit().await?;
        sent += page.len() as u64;
        // An operator watching a million clients go out sees it move.
        if sent % (PAGE * 50) == 0 {
            tracing::info!(sent, total, "client profiles queued");
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    tracing::info!(sent, "client profiles republished");
    Ok(sent)
}

/// `crm jobs republish-clients`, run against the clients service's database.
pub const REPUBLISH_CLIENTS_JOB: crm_runtime::Job = crm_runtime::Job {
    name: "republish-clients",
    about: "Send every client's profile again (tier, average, segments, coverage, \
            consent; no PII), a thousand per message, so the campaigns service \
            rebuilds its audience projection from scratch. Progress is logged",
    args: |command| command,
    run: |context| {
        Box::pin(async move {
            let settings: crate::ClientsSettings = context.settings.section()?;
            let tiers = settings
                .tier_policy()
                .map_err(crm_runtime::SettingsError::Section)?
                .thresholds;
            let sent = republish_clients(&context.db, &tiers)
                .await
                .map_err(crm_runtime::ModuleError::failed)?;
            Ok(format!(
                "client profiles: {sent} clients queued for publishing"
            ))
        })
    },
    // A maintenance command, run by hand only.
    schedule: None,
};
