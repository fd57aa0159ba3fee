//! Live work-item streams are bounded: a person may hold a few at once, a stream
//! ends when the token that opened it expires, and however many live feeds are
//! open they share one broker queue and never starve delivery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_auth::JwtKeys;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TEST_JWT_SECRET, on_both_backends, spawn_app, with_token};
use futures::StreamExt;
use secrecy::SecretString;

async fn one_person_may_hold_five_streams_and_no_more(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let open = || {
        let mut referrals = app.referrals();
        let rm = rm.clone();
        async move {
            referrals
                .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest::default()))
                .await
        }
    };
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(open().await.unwrap().into_inner());
    }
    let refused = open().await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    // Another RM is not locked out.
    let other = app.token("B-001-RM-2", Role::Rm, "B-001");
    app.referrals()
        .watch_work_items(with_token(&other, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap();
    // Closing one frees its place.
    drop(streams.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match open().await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place was never freed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    app.stop().await;
}

async fn a_stream_ends_when_its_token_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let short_lived = JwtKeys::hs256(&SecretString::from(TEST_JWT_SECRET))
        .unwrap()
        .mint(
            &StaffId::parse("B-001-RM-1").unwrap(),
            Role::Rm,
            &BranchId::parse("B-001").unwrap(),
            chrono::Duration::seconds(2),
        )
        .unwrap();
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(
            &short_lived,
            pb::WatchWorkItemsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends within seconds of its token's expiry");
    match ended {
        Some(Err(status)) => assert_eq!(status.code(), tonic::Code::Unauthenticated),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    app.stop().await;
}

/// A phone that stops reading (its app frozen, the network wedged) fills its
/// stream's buffers; the server's graceful shutdown must not wait on it past its
/// grace period (5 s). Before, it waited as long as the phone did.
async fn a_client_that_stops_reading_does_not_hold_up_shutdown(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    // The smallest window HTTP/2 allows, so the buffers fill with fewer items.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(Some(65_535))
        .connect()
        .await
        .unwrap();
    let rm = app.token("B-001-RM-2", Role::Rm, "B-001");
    let stalled = pb::referral_service_client::ReferralServiceClient::new(channel)
        .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // The teller's paired RM is RM-2: every referral lands on the stalled stream,
    // each item carrying a 2,000-character note.
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    for n in 0..700 {
        app.referrals()
            .create_referral(with_token(
                &teller,
                pb::CreateReferralRequest {
                    idempotency_key: format!("stall-{n}"),
                    client_id: format!("C-{:06}", 700_000 + n),
                    need: pb::Need::Loan as i32,
                    priority: pb::Priority::Normal as i32,
                    note: "n".repeat(2_000),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    // Let the feed reach the stream's task and fill what the phone won't read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop_within(Duration::from_secs(12))
        .await
        .expect("shutdown finished though a stream's client stopped reading");
    drop(stalled);
}

on_both_backends!(
    one_person_may_hold_five_streams_and_no_more,
    a_stream_ends_when_its_token_expires,
    a_client_that_stops_reading_does_not_hold_up_shutdown,
);

/// Live feeds share the process's one live queue: 10,000 phones' subscriptions
/// (five times the 2,047 channels a broker connection carries, past which one
/// process used to refuse every stream) each get their own RM's messages and no
/// other's, and the relay's publish and a service's consumer are not starved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_live_feeds_share_one_queue_and_never_starve_delivery() {
    let bus = crm_testkit::bus(Backend::Distributed).await;
    let mut held = Vec::new();
    for n in 0..10_000 {
        let subscription = tokio::time::timeout(
            Duration::from_secs(10),
            bus.subscribe_live(&crm_bus::rm_routing_key(&format!("S-{n:05}"))),
        )
        .await
        .expect("a live subscription opens at once")
        .unwrap();
        held.push(subscription);
    }
    // A message to three of the RMs reaches exactly their subscriptions.
    let addressed = [0usize, 4_321, 9_999];
    let messages: Vec<crm_bus::Envelope> = addressed
        .iter()
        .map(|n| {
            let mut envelope = crm_bus::Envelope::new(
                crm_domain::messages::WORK_ITEM_CHANGED,
                &crm_bus::rm_routing_key(&format!("S-{n:05}")),
                &"for one phone",
            )
            .unwrap();
            envelope.message_id = format!("live-{n}");
            envelope
        })
        .collect();
    bus.publish_confirmed(&messages).await.unwrap();
    for n in addressed {
        let event = tokio::time::timeout(Duration::from_secs(10), held[n].next())
            .await
            .expect("the addressed phone hears within seconds")
            .expect("the subscription is open");
        match event {
            crm_bus::SubscriptionEvent::Message(delivery) => {
                assert_eq!(delivery.envelope.message_id, format!("live-{n}"));
                delivery.ack().await.unwrap();
            }
            crm_bus::SubscriptionEvent::Reconnected => panic!("no reconnect happened"),
        }
    }
    for (n, subscription) in held.iter_mut().enumerate() {
        assert!(
            subscription.try_next().is_none(),
            "subscription {n} heard a message meant for another RM"
        );
    }
    let mut consumer = bus.consume("referrals", 8).await.unwrap();
    let news = crm_bus::Envelope::new(
        crm_domain::messages::STAFF_CHANGED,
        crm_domain::messages::STAFF_CHANGED,
        &"news",
    )
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        bus.publish_confirmed(std::slice::from_ref(&news)),
    )
    .await
    .expect("the publish is not starved of a channel")
    .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match consumer.next().await {
                Some(crm_bus::SubscriptionEvent::Message(delivery)) => break delivery,
                Some(_) => continue,
                None => panic!("the consumer ended"),
            }
        }
    })
    .await
    .expect("the consumer receives");
    assert_eq!(received.envelope.message_id, news.message_id);
    received.ack().await.unwrap();
    drop(held);
}
