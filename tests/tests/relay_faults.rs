//! The relay recovers from a queue deleted under a live connection, and a row
//! that can never be published is set aside — with why — instead of holding up
//! every row behind it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_bus::Envelope;
use crm_bus::outbox::{ISOLATE_AFTER_ATTEMPTS, OutboxWaker, Relay};
use crm_domain::messages::PAIR_CHANGED;
use crm_store::bus::outbox;
use crm_testkit::{Backend, on_both_backends};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};

async fn commit(db: &crm_store::Db, envelope: &Envelope) {
    let transaction = db.begin().await.unwrap();
    crm_bus::outbox::enqueue(&transaction, "clients", envelope)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
}

async fn unsent(db: &crm_store::Db) -> u64 {
    outbox::Entity::find()
        .filter(outbox::Column::SentAt.is_null())
        .count(db)
        .await
        .unwrap()
}

async fn a_queue_deleted_under_a_live_connection_is_declared_again(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let relay = Relay::new(
        store.db.clone(),
        bus.clone(),
        "clients",
        OutboxWaker::default(),
    );
    let queue = bus.topology().service_queue("referrals");
    bus.delete_queue(&queue).await.unwrap();
    commit(
        &store.db,
        &Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &"news").unwrap(),
    )
    .await;
    let relaying = tokio::spawn(async move { relay.relay_once().await });
    // The relay declared the queue again; its consumer comes back to it (the
    // in-process relay waits for that consumer to settle the message).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _consumer = crm_testkit::drain_queue(&bus, &store.db, "referrals").drop_guard();
    assert_eq!(
        relaying.await.unwrap().unwrap(),
        1,
        "published without a reconnect"
    );
    assert_eq!(unsent(&store.db).await, 0);
    store.drop().await;
}

async fn a_row_that_fails_alone_is_set_aside_and_the_rest_go_out(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let _drain = crm_testkit::drain_queue(&bus, &store.db, "referrals").drop_guard();
    let relay = Relay::new(
        store.db.clone(),
        bus.clone(),
        "clients",
        OutboxWaker::default(),
    );
    // At the head of the outbox, a row no broker will take.
    let mut bad = Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &"bad").unwrap();
    bad.routing_key = "x".repeat(300);
    commit(&store.db, &bad).await;
    for n in 0..3 {
        let good = Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &format!("good {n}")).unwrap();
        commit(&store.db, &good).await;
    }
    for _ in 0..=ISOLATE_AFTER_ATTEMPTS {
        let _ = relay.relay_once().await;
    }
    assert_eq!(unsent(&store.db).await, 1, "the three good rows went out");
    let parked = crm_bus::outbox::parked(&store.db, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_id, bad.message_id);
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("255"),
        "{:?}",
        parked[0].last_error
    );
    // Set aside, it no longer holds anything up: a new row goes out at once.
    commit(
        &store.db,
        &Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &"later").unwrap(),
    )
    .await;
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    // And it can be returned to the relay once its cause is fixed.
    assert_eq!(
        crm_bus::outbox::retry_parked(&store.db, &[]).await.unwrap(),
        1
    );
    assert!(
        crm_bus::outbox::parked(&store.db, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.drop().await;
}

on_both_backends!(
    a_queue_deleted_under_a_live_connection_is_declared_again,
    a_row_that_fails_alone_is_set_aside_and_the_rest_go_out,
);

/// In the embedded default a row counts as sent only once the consuming service
/// has committed it: a message that sits in an in-process queue when the process
/// stops is published again at the next start, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_row_is_sent_only_once_its_consumer_committed_it() {
    let store = crm_testkit::messaging_store(Backend::Embedded).await;
    let bus = crm_testkit::bus(Backend::Embedded).await;
    let relay = Relay::new(
        store.db.clone(),
        bus.clone(),
        "clients",
        OutboxWaker::default(),
    );
    commit(
        &store.db,
        &Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &"news").unwrap(),
    )
    .await;
    let relaying = tokio::spawn(async move { relay.relay_once().await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!relaying.is_finished(), "the relay waits for the consumer");
    assert_eq!(unsent(&store.db).await, 1, "not sent while only in memory");
    // The referrals service's consumer takes it and commits: now it is sent.
    let _consumer = crm_testkit::drain_queue(&bus, &store.db, "referrals").drop_guard();
    assert_eq!(relaying.await.unwrap().unwrap(), 1);
    assert_eq!(unsent(&store.db).await, 0);
    store.drop().await;
}
