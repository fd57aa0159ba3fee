//! A consumer tells failures apart: a database that is down or a deadlock is
//! retried in place for as long as it takes, holding the message, so it never uses
//! up the delivery limit of a good message; a message without an id is poison.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crm_bus::{Envelope, HandlerError, MessageHandler, RetryDelays};
use crm_domain::messages::COVERAGE_CHANGED;
use crm_testkit::{Backend, on_both_backends};
use sea_orm::DatabaseTransaction;
use tokio_util::sync::CancellationToken;

/// Fails transiently `failures` times, then succeeds; counts every attempt.
struct Flaky {
    failures: usize,
    attempts: AtomicUsize,
}

#[async_trait::async_trait]
impl MessageHandler for Flaky {
    async fn handle(&self, _: &DatabaseTransaction, _: &Envelope) -> Result<(), HandlerError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.failures {
            Err(HandlerError::Transient("database restarting".into()))
        } else {
            Ok(())
        }
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 15 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_transient_failure_never_uses_up_the_delivery_limit(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    // More failures than the queue's delivery limit (5) allows redeliveries.
    let handler = Arc::new(Flaky {
        failures: 8,
        attempts: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(crm_bus::run_consumer_with(
        bus.clone(),
        store.db.clone(),
        "referrals",
        handler.clone(),
        8,
        RetryDelays {
            first: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
        shutdown.clone(),
    ));
    let message = Envelope::new(COVERAGE_CHANGED, COVERAGE_CHANGED, &"news").unwrap();
    bus.publish_confirmed(std::slice::from_ref(&message))
        .await
        .unwrap();
    wait_until("the message to be processed", async || {
        handler.attempts.load(Ordering::SeqCst) >= 9
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        handler.attempts.load(Ordering::SeqCst),
        9,
        "processed once, after 8 tries"
    );
    assert!(
        bus.dead_letters(10).await.unwrap().is_empty(),
        "nothing dead-lettered"
    );
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    store.drop().await;
}

async fn a_message_without_an_id_is_dead_lettered_not_taken_for_a_repeat(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let handler = Arc::new(Flaky {
        failures: 0,
        attempts: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(crm_bus::run_consumer(
        bus.clone(),
        store.db.clone(),
        "referrals",
        handler.clone(),
        8,
        shutdown.clone(),
    ));
    let mut anonymous = Envelope::new(COVERAGE_CHANGED, COVERAGE_CHANGED, &"no id").unwrap();
    anonymous.message_id = String::new();
    bus.publish_confirmed(std::slice::from_ref(&anonymous))
        .await
        .unwrap();
    wait_until("the message to be dead-lettered", async || {
        !bus.dead_letters(10).await.unwrap().is_empty()
    })
    .await;
    assert_eq!(handler.attempts.load(Ordering::SeqCst), 0, "never handled");
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    store.drop().await;
}

on_both_backends!(
    a_transient_failure_never_uses_up_the_delivery_limit,
    a_message_without_an_id_is_dead_lettered_not_taken_for_a_repeat,
);
