//! A client whose salary the bank receives is tagged `payroll`, with the employer
//! (`client.payroll_detected` from the events service): a segment the book's
//! search finds, kept by every later UpsertClient (client_book.rs).

use crate::store::client;
use crm_bus::HandlerError;
use crm_domain::messages::PayrollDetected;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QuerySelect,
};

use crate::client_book::{PAYROLL, store_segments};

pub async fn apply(
    transaction: &DatabaseTransaction,
    tiers: &crm_domain::tier::TierPolicy,
    message: PayrollDetected,
) -> Result<(), HandlerError> {
    let Some(current) = client::Entity::find_by_id(message.client_id.as_str())
        .lock_exclusive()
        .one(transaction)
        .await?
    else {
        tracing::warn!(client_id = %message.client_id, "a payroll credit for a client the book does not hold");
        return Ok(());
    };
    let mut segments: Vec<String> = serde_json::from_str(&current.segments)
        .map_err(|error| HandlerError::Failed(format!("stored segments: {error}")))?;
    if !segments.iter().any(|segment| segment == PAYROLL) {
        segments.push(PAYROLL.to_owned());
    }
    let client_id = current.client_id.clone();
    let mut row = current.into_active_model();
    row.payroll_employer_id = Set(Some(message.employer_id));
    row.segments = Set(serde_json::to_string(&segments)
        .map_err(|error| HandlerError::Failed(error.to_string()))?);
    row.updated_at = Set(chrono::Utc::now());
    let stored = row.update(transaction).await?;
    store_segments(transaction, &client_id, &segments)
        .await
        .map_err(|error| HandlerError::Failed(error.to_string()))?;
    crate::client_profile::announce(transaction, &stored, &tiers.thresholds)
        .await
        .map_err(|error| HandlerError::Failed(error.to_string()))?;
    Ok(())
}
