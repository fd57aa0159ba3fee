//! Payroll clients: a client whose salary the bank receives is a client to grow.
//! The first `PayrollCredit` (or one from a new employer) tags them in the client
//! book (`client.payroll_detected`: segment `payroll`, with the employer); when a
//! payroll client's average crosses into WEALTH, the RM's follow-up is a
//! cultivation call rather than a plain welcome (tier_followups.rs).

use chrono::{DateTime, Utc};
use crm_domain::messages::{PAYROLL_DETECTED, PayrollDetected};
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait, QuerySelect};

use crate::SERVICE;
use crate::error::Result;
use crate::store::payroll_client;

/// One salary credit taken in.
pub async fn apply_credit(
    transaction: &DatabaseTransaction,
    client_id: &str,
    employer_id: &str,
    occurred_at: DateTime<Utc>,
) -> Result<()> {
    let known = payroll_client::Entity::find_by_id(client_id)
        .lock_exclusive()
        .one(transaction)
        .await?;
    let news = known.as_ref().is_none_or(|known| {
        known.employer_id != employer_id && known.last_credit_at <= occurred_at
    });
    let row = payroll_client::ActiveModel {
        client_id: Set(client_id.to_owned()),
        employer_id: Set(employer_id.to_owned()),
        last_credit_at: Set(occurred_at),
    };
    match known {
        None => {
            payroll_client::Entity::insert(row)
                .exec_without_returning(transaction)
                .await?;
        }
        // The latest credit names the employer.
        Some(known) if known.last_credit_at <= occurred_at => {
            payroll_client::Entity::update(row)
                .exec(transaction)
                .await?;
        }
        Some(_) => {}
    }
    if news {
        let message = PayrollDetected {
            client_id: client_id.to_owned(),
            employer_id: employer_id.to_owned(),
            detected_at: occurred_at,
        };
        crm_bus::outbox::enqueue_event(
            transaction,
            SERVICE,
            PAYROLL_DETECTED,
            PAYROLL_DETECTED,
            &message,
        )
        .await?;
    }
    Ok(())
}

/// Whether the client is paid through the bank.
pub async fn is_payroll_client(
    transaction: &DatabaseTransaction,
    client_id: &str,
) -> std::result::Result<bool, sea_orm::DbErr> {
    Ok(payroll_client::Entity::find_by_id(client_id)
        .one(transaction)
        .await?
        .is_some())
}
