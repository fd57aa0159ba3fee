//! `crm jobs reseal-client-pii`: after CRM_PII_KEY was rotated, every client's
//! national id and phone sealed under a previous key is sealed again under the
//! current one, with its lookup hashes — a page at a time, each page in its own
//! transaction with its rows locked, so the book keeps serving meanwhile. Rows
//! already under the current key are left alone: safe to run again, or beside
//! another run. Once it (and `reseal-referral-pii`) has run,
//! CRM_PII_PREVIOUS_KEYS can be emptied.

use crm_store::pages::LockedPages;
use crm_store::{Db, Vault};
use sea_orm::ActiveValue::Set;
use sea_orm::{EntityTrait, IntoActiveModel};

use crate::error::Result;
use crate::store::client;

pub const RESEAL_CLIENT_PII_JOB: crm_runtime::Job = crm_runtime::Job {
    name: "reseal-client-pii",
    about: "After a PII key rotation: seal every client's national id and phone again \
            under CRM_PII_KEY, with their lookup hashes, 500 clients per transaction. \
            Rows already under it are left alone; then CRM_PII_PREVIOUS_KEYS can go",
    args: |command| command,
    run: |context| {
        Box::pin(async move {
            let vault = context.vault()?;
            let (resealed, read) = reseal(&context.db, &vault)
                .await
                .map_err(crm_runtime::ModuleError::failed)?;
            Ok(format!(
                "client PII: {resealed} of {read} clients sealed again under the current key"
            ))
        })
    },
    // A maintenance command, run by hand after a key rotation.
    schedule: None,
};

/// How many clients were sealed again, of how many read.
pub async fn reseal(db: &Db, vault: &Vault) -> Result<(u64, u64)> {
    let mut pages = LockedPages::new(client::Entity::find(), client::Column::ClientId, |row| {
        row.client_id.clone()
    });
    let mut resealed = 0;
    while let Some((transaction, rows)) = pages.next(db).await? {
        for row in rows {
            if vault.is_current(&row.national_id) && vault.is_current(&row.phone) {
                continue;
            }
            let national_id = vault.open(&row.national_id)?;
            let phone = vault.open(&row.phone)?;
            let mut active = row.into_active_model();
            active.national_id = Set(vault.seal(&national_id)?);
            active.national_id_hash = Set(vault.lookup_hash(&national_id));
            active.phone = Set(vault.seal(&phone)?);
            active.phone_hash = Set(vault.lookup_hash(&phone));
            client::Entity::update(active).exec(&transaction).await?;
            resealed += 1;
        }
        transaction.commit().await?;
    }
    let read = pages.read();
    tracing::info!(
        resealed,
        read,
        "client PII sealed again under the current key"
    );
    Ok((resealed, read))
}
