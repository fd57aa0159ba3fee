//! `crm jobs reseal-referral-pii`: after CRM_PII_KEY was rotated, every walk-in's
//! phone sealed under a previous key is sealed again under the current one, with
//! its lookup hash and (for a walk-in's referral) its duplicate key — a page at a
//! time (`crm_store::pages`). Rows already under the
//! current key are left alone: safe to run again.

use crm_store::pages::LockedPages;
use crm_store::{Db, Vault};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};

use crate::error::Result;
use crate::store::referral;

pub const RESEAL_REFERRAL_PII_JOB: crm_runtime::Job = crm_runtime::Job {
    name: "reseal-referral-pii",
    about: "After a PII key rotation: seal every walk-in's phone again under \
            CRM_PII_KEY, with its lookup hash and duplicate key, 500 referrals per \
            transaction. Rows already under it are left alone",
    args: |command| command,
    run: |context| {
        Box::pin(async move {
            let vault = context.vault()?;
            let (resealed, read) = reseal(&context.db, &vault)
                .await
                .map_err(crm_runtime::ModuleError::failed)?;
            Ok(format!(
                "referral PII: {resealed} of {read} walk-in referrals sealed again under the current key"
            ))
        })
    },
    // A maintenance command, run by hand after a key rotation.
    schedule: None,
};

/// How many walk-in referrals were sealed again, of how many read.
pub async fn reseal(db: &Db, vault: &Vault) -> Result<(u64, u64)> {
    let mut pages = LockedPages::new(
        referral::Entity::find().filter(referral::Column::ProspectPhone.is_not_null()),
        referral::Column::ReferralId,
        |row| row.referral_id.clone(),
    );
    let mut resealed = 0;
    while let Some((transaction, rows)) = pages.next(db).await? {
        for row in rows {
            let Some(sealed) = row.prospect_phone.clone() else {
                continue;
            };
            if vault.is_current(&sealed) {
                continue;
            }
            let phone = vault.open(&sealed)?;
            let phone_hash = vault.lookup_hash(&phone);
            // A walk-in's duplicate key follows their phone's hash; a referral
            // already linked to a client keeps its client key.
            let dedupe_key = row.dedupe_key.clone().map(|key| {
                if key.starts_with("phone:") {
                    crate::create::phone_dedupe_key(&phone_hash, row.need.as_str())
                } else {
                    key
                }
            });
            let mut active = row.into_active_model();
            active.prospect_phone = Set(Some(vault.seal(&phone)?));
            active.prospect_phone_hash = Set(phone_hash);
            active.dedupe_key = Set(dedupe_key);
            referral::Entity::update(active).exec(&transaction).await?;
            resealed += 1;
        }
        transaction.commit().await?;
    }
    let read = pages.read();
    tracing::info!(
        resealed,
        read,
        "walk-in phones sealed again under the current key"
    );
    Ok((resealed, read))
}
