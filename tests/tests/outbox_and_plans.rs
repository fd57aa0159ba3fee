//! What keeps CreateReferral fast under sustained load, held by tests:
//! - a write batch is one statement on PostgreSQL and all-or-nothing on both;
//! - the relay publishes rows a caller names by id, without scanning the outbox,
//!   and its scan still finds rows nobody named; sent rows are pruned by id;
//! - the hot queries get index plans on a young table without statistics, where
//!   a cached generic plan would otherwise stay a sequential scan as it grows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_testkit::{Backend, on_both_backends};

use std::time::Duration;

use crm_bus::outbox::{OutboxWaker, Relay};
use crm_bus::{Envelope, SubscriptionEvent};
use crm_domain::messages::PAIR_CHANGED;
use crm_store::bus::outbox;
use crm_store::{Db, WriteBatch};
use sea_orm::sea_query::{Expr, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement,
    TransactionTrait, Value,
};
use tokio_util::sync::CancellationToken;

fn event(body: &str) -> Envelope {
    Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &body).unwrap()
}

async fn commit_row(db: &Db, envelope: &Envelope) {
    let transaction = db.begin().await.unwrap();
    crm_bus::outbox::enqueue(&transaction, "clients", envelope)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
}

async fn next_id(subscription: &mut crm_bus::Subscription, within: Duration) -> Option<String> {
    loop {
        match tokio::time::timeout(within, subscription.next()).await {
            Err(_) => return None,
            Ok(Some(SubscriptionEvent::Message(delivery))) => {
                let id = delivery.envelope.message_id.clone();
                delivery.ack().await.unwrap();
                return Some(id);
            }
            Ok(Some(SubscriptionEvent::Reconnected)) => continue,
            Ok(None) => panic!("subscription closed"),
        }
    }
}

async fn named_rows_go_out_at_once_and_a_scan_finds_the_rest(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let mut subscription = bus.consume("referrals", 8).await.unwrap();
    let waker = OutboxWaker::default();
    let mut relay = Relay::new(store.db.clone(), bus.clone(), "clients", waker.clone());
    // No poll within the test: only a named row or a wake can move anything.
    relay.poll_interval = Duration::from_secs(3600);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await; // its first scan, of nothing

    let named = event("named");
    commit_row(&store.db, &named).await;
    waker.committed([named.message_id.clone()]);
    assert_eq!(
        next_id(&mut subscription, Duration::from_secs(5)).await,
        Some(named.message_id.clone()),
        "a row named after its commit is published without a scan"
    );

    let unnamed = event("unnamed");
    commit_row(&store.db, &unnamed).await;
    assert_eq!(
        next_id(&mut subscription, Duration::from_millis(700)).await,
        None,
        "nothing tells the relay of this row yet"
    );
    // A rolled-back row's id is harmless: no row, nothing sent.
    waker.committed(["never-committed".to_owned()]);
    waker.wake();
    assert_eq!(
        next_id(&mut subscription, Duration::from_secs(5)).await,
        Some(unnamed.message_id.clone()),
        "a wake scans for unsent rows"
    );

    // The relay marks rows sent after the broker confirms them, so just after
    // the delivery the mark may still be on its way.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let unsent = outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .all(&store.db)
            .await
            .unwrap();
        if unsent.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both rows are marked sent: {unsent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    store.drop().await;
}

async fn sent_rows_are_pruned_and_unsent_ones_kept(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let mut subscription = bus.consume("referrals", 8).await.unwrap();
    // Another service's row, old and unsent: never this relay's to delete.
    let mut foreign = event("someone else's");
    foreign.message_id = uuid::Uuid::now_v7().to_string();
    let transaction = store.db.begin().await.unwrap();
    crm_bus::outbox::enqueue(&transaction, "events", &foreign)
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    let waker = OutboxWaker::default();
    let mut relay = Relay::new(store.db.clone(), bus.clone(), "clients", waker.clone());
    relay.poll_interval = Duration::from_millis(20);
    relay.keep_sent_for = chrono::Duration::milliseconds(1);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    let sent: Vec<Envelope> = (0..3).map(|n| event(&format!("row {n}"))).collect();
    for envelope in &sent {
        commit_row(&store.db, envelope).await;
    }
    waker.committed(sent.iter().map(|e| e.message_id.clone()));
    for _ in &sent {
        assert!(
            next_id(&mut subscription, Duration::from_secs(5))
                .await
                .is_some()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = outbox::Entity::find().all(&store.db).await.unwrap();
        if left.len() == 1 {
            assert_eq!(left[0].message_id, foreign.message_id);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sent rows were not pruned: {} left",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    store.drop().await;
}

async fn a_write_batch_is_all_or_nothing(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let existing = event("existing");
    commit_row(&store.db, &existing).await;

    let first = event("first");
    let mut writes = WriteBatch::new();
    writes
        .insert(crm_bus::outbox::row("clients", &first))
        .update(
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Attempts, Expr::value(7))
                .filter(outbox::Column::MessageId.eq(existing.message_id.as_str()))
                .into_query(),
        );
    let transaction = store.db.begin().await.unwrap();
    writes.execute(&transaction).await.unwrap();
    transaction.commit().await.unwrap();
    let stored = outbox::Entity::find().all(&store.db).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().any(|row| row.message_id == first.message_id));
    assert!(
        stored
            .iter()
            .any(|row| row.message_id == existing.message_id && row.attempts == 7)
    );

    // The second insert collides with an existing row: the batch fails whole.
    let second = event("second");
    let mut writes = WriteBatch::new();
    writes
        .insert(crm_bus::outbox::row("clients", &second))
        .insert(crm_bus::outbox::row("clients", &existing));
    let transaction = store.db.begin().await.unwrap();
    let error = writes.execute(&transaction).await.unwrap_err();
    assert!(crm_store::db::is_unique_violation(&error), "{error}");
    transaction.rollback().await.unwrap();
    let stored = outbox::Entity::find().all(&store.db).await.unwrap();
    assert_eq!(stored.len(), 2, "nothing of the failed batch is kept");
    store.drop().await;
}

/// A string literal for EXECUTE (every parameter of the checked queries is text).
fn literal(value: &Value) -> String {
    match value {
        Value::String(Some(text)) => format!("'{}'", text.replace('\'', "''")),
        other => panic!("unexpected parameter {other:?}"),
    }
}

/// The plan PostgreSQL caches for `statement` once it stops planning per call.
async fn generic_plan(db: &Db, statement: Statement) -> String {
    let transaction = db.begin().await.unwrap();
    transaction
        .execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    transaction
        .execute_unprepared(&format!("PREPARE checked AS {}", statement.sql))
        .await
        .unwrap();
    let arguments: Vec<String> = statement
        .values
        .iter()
        .flat_map(|values| values.0.iter())
        .map(literal)
        .collect();
    let rows = transaction
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN EXECUTE checked({})", arguments.join(", ")),
        ))
        .await
        .unwrap();
    let plan = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    transaction.rollback().await.unwrap();
    plan
}

fn build(query: &SelectStatement) -> Statement {
    DbBackend::Postgres.build(query)
}

#[tokio::test]
async fn the_hot_queries_use_their_indexes_on_a_young_table() {
    let app = crm_testkit::spawn_app(crm_testkit::Backend::Distributed).await;

    let retry_check = crm_referrals::create::earlier_request_query(
        Some(&crm_referrals::create::request_key("B-001-T-1", "key-1")),
        &["client:C-000001:loan".to_owned()],
    );
    let plan = generic_plan(&app.db, build(&retry_check)).await;
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(plan.contains("idx_referrals_request_key"), "{plan}");

    let by_id = crm_bus::outbox::rows_by_id(&["a".to_owned(), "b".to_owned()]).into_query();
    let plan = generic_plan(&app.db, build(&by_id)).await;
    assert!(plan.contains("outbox_pkey"), "{plan}");
    assert!(!plan.contains("idx_outbox_unsent"), "{plan}");
    app.stop().await;
}

on_both_backends!(
    named_rows_go_out_at_once_and_a_scan_finds_the_rest,
    sent_rows_are_pruned_and_unsent_ones_kept,
    a_write_batch_is_all_or_nothing,
);
