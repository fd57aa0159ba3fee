//! What must hold once the faults are over and the system has settled, read from
//! each service's own schema, the broker and what the RMs' streams received.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::coverage::Covered;
use crate::load::Call;
use crate::streams::Deliveries;
use crm_chaos::cluster::{Cluster, SCHEMAS};

pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

fn check(name: &str, passed: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        passed,
        detail,
    }
}

async fn rows(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<sea_orm::QueryResult>> {
    Ok(db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?)
}

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let found = rows(db, sql).await?;
    Ok(match found.first() {
        Some(row) => row.try_get_by_index::<i64>(0)?,
        None => 0,
    })
}

/// Unsent outbox rows (parked ones included) in every service's schema.
pub async fn unsent_outbox_rows(cluster: &Cluster) -> anyhow::Result<i64> {
    Ok(unsent_by_service(cluster)
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum())
}

/// Unsent outbox rows per service, and of which message types.
async fn unsent_by_service(cluster: &Cluster) -> anyhow::Result<Vec<(String, i64)>> {
    let mut unsent = Vec::new();
    for schema in SCHEMAS {
        let db = cluster.schema(schema).await?;
        let n = count(&db, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").await?;
        if n > 0 {
            let types = db
                .query_all_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT message_type || ' ' || COUNT(*) || ' (attempts ' || MAX(attempts) \
                     || ', parked ' || COUNT(parked_at) || ', last error ' \
                     || COALESCE(MAX(last_error), '-') || ')', COUNT(*) FROM outbox \
                     WHERE sent_at IS NULL GROUP BY message_type"
                        .to_owned(),
                ))
                .await?
                .iter()
                .filter_map(|row| row.try_get_by_index::<String>(0).ok())
                .collect::<Vec<_>>()
                .join(", ");
            // Rows a live transaction holds (a relay's claim that never ended) are
            // skipped by every other relay's scan.
            let free = count(
                &db,
                "SELECT COUNT(*) FROM (SELECT message_id FROM outbox WHERE sent_at IS NULL \
                 FOR UPDATE SKIP LOCKED) free",
            )
            .await?;
            let types = format!("{types}; {} of them held by a transaction", n - free);
            unsent.push((format!("{schema} ({types})"), n));
        }
        db.close().await?;
    }
    Ok(unsent)
}

/// Every work item's current version, with its RM.
pub async fn work_item_versions(
    referrals: &DatabaseConnection,
) -> anyhow::Result<Vec<(String, i64)>> {
    rows(referrals, "SELECT work_item_id, version FROM work_items")
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get_by_index::<String>(0)?,
                row.try_get_by_index::<i64>(1)?,
            ))
        })
        .collect()
}

/// Versions of work items no stream has delivered.
pub fn undelivered(versions: &[(String, i64)], deliveries: &Deliveries) -> usize {
    versions
        .iter()
        .filter(|key| !deliveries.seen.contains_key(*key))
        .count()
}

pub async fn run(
    cluster: &Cluster,
    calls: &[Call],
    deliveries: &Deliveries,
    covered: &[Covered],
) -> anyhow::Result<Vec<Check>> {
    let referrals = cluster.schema("referrals").await?;
    let mut checks = Vec::new();

    // Every key the generator sent, exactly one referral, the one its answer named.
    let stored: HashMap<String, (String, i64)> = rows(
        &referrals,
        "SELECT request_key, MIN(referral_id), COUNT(*) FROM referrals GROUP BY request_key",
    )
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get_by_index::<String>(0)?,
            (
                row.try_get_by_index::<String>(1)?,
                row.try_get_by_index::<i64>(2)?,
            ),
        ))
    })
    .collect::<anyhow::Result<_>>()?;
    let mut missing = 0;
    let mut twice = 0;
    let mut answered_otherwise = 0;
    for call in calls {
        match stored.get(&format!("{}/{}", call.teller_id, call.key)) {
            None => missing += 1,
            Some((_, n)) if *n > 1 => twice += 1,
            Some((referral_id, _)) => {
                if call
                    .referral_id
                    .as_ref()
                    .is_some_and(|id| id != referral_id)
                {
                    answered_otherwise += 1;
                }
            }
        }
    }
    checks.push(check(
        "every idempotency key sent is exactly one referral",
        missing == 0 && twice == 0 && answered_otherwise == 0 && stored.len() == calls.len(),
        format!(
            "{} keys, {} referrals stored; {missing} missing, {twice} stored twice, \
             {answered_otherwise} answered with another referral than the one stored",
            calls.len(),
            stored.len()
        ),
    ));

    let final_errors: Vec<String> = calls
        .iter()
        .filter_map(|call| call.final_error.as_ref())
        .map(|(code, message)| format!("{code:?}: {message}"))
        .collect();
    checks.push(check(
        "no call answered with a code the teller app does not retry",
        final_errors.is_empty(),
        if final_errors.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{}: {:?}",
                final_errors.len(),
                &final_errors[..final_errors.len().min(5)]
            )
        },
    ));

    let without_one_open_item = count(
        &referrals,
        "SELECT COUNT(*) FROM (SELECT r.referral_id FROM referrals r \
         LEFT JOIN work_items w ON w.source_id = r.referral_id AND w.state <> 'done' \
         GROUP BY r.referral_id HAVING COUNT(w.work_item_id) <> 1) AS wrong",
    )
    .await?;
    checks.push(check(
        "every referral has exactly one open work item",
        without_one_open_item == 0,
        format!("{without_one_open_item} referrals with none or several"),
    ));

    let not_created_once = count(
        &referrals,
        "SELECT COUNT(*) FROM (SELECT r.referral_id FROM referrals r \
         LEFT JOIN referral_history h ON h.referral_id = r.referral_id AND h.action = 'created' \
         GROUP BY r.referral_id HAVING COUNT(h.history_id) <> 1) AS wrong",
    )
    .await?;
    let not_announced_once = count(
        &referrals,
        "SELECT COUNT(*) FROM (SELECT w.work_item_id FROM work_items w \
         LEFT JOIN outbox o ON o.message_type = 'work_item.changed' \
         AND o.payload::jsonb ->> 'work_item_id' = w.work_item_id \
         AND (o.payload::jsonb ->> 'version')::bigint = w.version \
         GROUP BY w.work_item_id HAVING COUNT(o.message_id) <> 1) AS wrong",
    )
    .await?;
    checks.push(check(
        "every referral was made once: one 'created' in its history, its item announced once",
        not_created_once == 0 && not_announced_once == 0,
        format!(
            "{not_created_once} referrals without exactly one 'created'; \
             {not_announced_once} items not announced exactly once"
        ),
    ));

    let miscounted = count(
        &referrals,
        "SELECT COUNT(*) FROM routing_staff s WHERE s.open_referrals <> \
         (SELECT COUNT(*) FROM referrals r WHERE r.assigned_rm_id = s.staff_id \
          AND r.status IN ('new', 'assigned', 'accepted', 'contacted'))",
    )
    .await?;
    checks.push(check(
        "routing's load count of every RM equals their open referrals",
        miscounted == 0,
        format!("{miscounted} staff miscounted"),
    ));

    let versions = work_item_versions(&referrals).await?;
    let never = undelivered(&versions, deliveries);
    checks.push(check(
        "every work item version reached its RM's stream, once per connection",
        never == 0 && deliveries.duplicates_on_one_connection == 0,
        format!(
            "{} item versions; {never} never delivered; {} delivered twice on one \
             connection; {} resent by a reconnect's snapshot; {} stream connections",
            versions.len(),
            deliveries.duplicates_on_one_connection,
            deliveries.seen.values().filter(|n| **n > 1).count(),
            deliveries.connections
        ),
    ));

    let unsent = unsent_by_service(cluster).await?;
    let total: i64 = unsent.iter().map(|(_, n)| n).sum();
    checks.push(check(
        "no outbox row left unsent (or parked) in any service",
        total == 0,
        format!(
            "{total} unsent{}",
            unsent
                .iter()
                .map(|(service, n)| format!("; {service}: {n}"))
                .collect::<String>()
        ),
    ));

    let dead = cluster.dead_letters().await?;
    checks.push(check(
        "the dead-letter queue is empty",
        dead == 0,
        format!("{dead} messages"),
    ));

    let copies: HashSet<(String, String)> = rows(
        &referrals,
        "SELECT client_id, primary_rm_id FROM routing_clients WHERE primary_rm_id IS NOT NULL",
    )
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get_by_index::<String>(0)?,
            row.try_get_by_index::<String>(1)?,
        ))
    })
    .collect::<anyhow::Result<_>>()?;
    let lost = covered
        .iter()
        .filter(|c| !copies.contains(&(c.client_id.clone(), c.primary_rm_id.clone())))
        .count();
    checks.push(check(
        "every client covered at the clients service reached routing's copy",
        lost == 0 && !covered.is_empty(),
        format!("{} covered, {lost} not in routing_clients", covered.len()),
    ));
    referrals.close().await?;
    Ok(checks)
}
