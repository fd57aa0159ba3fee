//! One contract, two transports: RabbitMQ and the in-process bus deliver, redeliver
//! and route the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_testkit::{Backend, on_both_backends};

use std::time::Duration;

use crm_bus::{Envelope, SubscriptionEvent};
use crm_domain::messages::PAIR_CHANGED;

fn event(body: &str) -> Envelope {
    let mut envelope = Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &body).unwrap();
    envelope.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    envelope
}

async fn next_message(subscription: &mut crm_bus::Subscription) -> crm_bus::Delivery {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("a delivery within 5 s")
        {
            Some(SubscriptionEvent::Message(delivery)) => return *delivery,
            Some(SubscriptionEvent::Reconnected) => continue,
            None => panic!("subscription closed"),
        }
    }
}

async fn a_published_event_arrives_whole_and_once_acked(backend: Backend) {
    let bus = crm_testkit::bus(backend).await;
    let mut subscription = bus.consume("referrals", 8).await.unwrap();
    let sent = event("hello");
    bus.publish_confirmed(std::slice::from_ref(&sent))
        .await
        .unwrap();
    let delivery = next_message(&mut subscription).await;
    assert_eq!(delivery.envelope.message_id, sent.message_id);
    assert_eq!(delivery.envelope.message_type, sent.message_type);
    assert_eq!(delivery.envelope.traceparent, sent.traceparent);
    assert_eq!(delivery.envelope.payload, sent.payload);
    assert!(!delivery.redelivered);
    delivery.ack().await.unwrap();
    let nothing_more = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(
        nothing_more.is_err(),
        "an acked message is not delivered again"
    );
}

async fn a_nacked_event_is_redelivered(backend: Backend) {
    let bus = crm_testkit::bus(backend).await;
    let mut subscription = bus.consume("referrals", 8).await.unwrap();
    let sent = event("again");
    bus.publish_confirmed(std::slice::from_ref(&sent))
        .await
        .unwrap();
    next_message(&mut subscription)
        .await
        .nack(true)
        .await
        .unwrap();
    let again = next_message(&mut subscription).await;
    assert_eq!(again.envelope.message_id, sent.message_id);
    assert!(again.redelivered);
    again.ack().await.unwrap();
}

async fn an_unacked_event_goes_to_the_next_consumer(backend: Backend) {
    let bus = crm_testkit::bus(backend).await;
    let sent = event("unacked");
    {
        let mut first = bus.consume("referrals", 8).await.unwrap();
        bus.publish_confirmed(std::slice::from_ref(&sent))
            .await
            .unwrap();
        let delivery = next_message(&mut first).await;
        drop(delivery);
        drop(first);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = bus.consume("referrals", 8).await.unwrap();
    let delivery = next_message(&mut second).await;
    assert_eq!(delivery.envelope.message_id, sent.message_id);
    delivery.ack().await.unwrap();
}

async fn a_live_subscription_gets_only_its_rms_feed(backend: Backend) {
    let bus = crm_testkit::bus(backend).await;
    let mut mine = bus.subscribe_live("rm.RM-1").await.unwrap();
    let other = Envelope::new("work_item.changed", "rm.RM-2", &"theirs").unwrap();
    let own = Envelope::new("work_item.changed", "rm.RM-1", &"mine").unwrap();
    bus.publish_confirmed(&[other, own.clone()]).await.unwrap();
    let delivery = next_message(&mut mine).await;
    assert_eq!(delivery.envelope.message_id, own.message_id);
    delivery.ack().await.unwrap();
    // Nobody listening on a live key is not an error: the database holds the item.
    let nobody = Envelope::new("work_item.changed", "rm.NOBODY", &"x").unwrap();
    bus.publish_confirmed(&[nobody]).await.unwrap();
}

async fn a_rejected_event_is_dead_lettered_and_can_be_replayed(backend: Backend) {
    let bus = crm_testkit::bus(backend).await;
    let mut subscription = bus.consume("referrals", 8).await.unwrap();
    let sent = event("poison");
    bus.publish_confirmed(std::slice::from_ref(&sent))
        .await
        .unwrap();
    next_message(&mut subscription)
        .await
        .nack(false)
        .await
        .unwrap();

    // Dead-lettering is asynchronous on the broker.
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = bus.dead_letters(10).await.unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(letters.len(), 1, "the rejected message is in crm.dead");
    assert_eq!(letters[0].envelope.message_id, sent.message_id);
    assert_eq!(letters[0].envelope.routing_key, PAIR_CHANGED);
    if backend == Backend::Distributed {
        assert_eq!(letters[0].reason.as_deref(), Some("rejected"));
    }
    assert_eq!(
        bus.dead_letters(10).await.unwrap().len(),
        1,
        "looking changes nothing"
    );

    assert_eq!(bus.replay_dead_letters(10).await.unwrap(), 1);
    let replayed = next_message(&mut subscription).await;
    assert_eq!(replayed.envelope.message_id, sent.message_id);
    assert_eq!(replayed.envelope.payload, sent.payload);
    replayed.ack().await.unwrap();
    assert!(bus.dead_letters(10).await.unwrap().is_empty());
}

on_both_backends!(
    a_published_event_arrives_whole_and_once_acked,
    a_nacked_event_is_redelivered,
    an_unacked_event_goes_to_the_next_consumer,
    a_live_subscription_gets_only_its_rms_feed,
    a_rejected_event_is_dead_lettered_and_can_be_replayed,
);
