//! The core-banking feed over real RabbitMQ: core banking publishes each event to
//! `corebank.events` as JSON (the proto3 mapping) or protobuf; the events service
//! takes them in batches through the same path as IngestEvents. A redelivered or
//! resent event has no second effect; a message it can't read is dead-lettered
//! with its reason while the next one is taken. Events of a client the client
//! book has not announced are held, then applied once it does (both backends),
//! and `crm jobs feed-watch` lists them when they wait too long and reports a
//! silent feed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use prost::Message;

const FEED: &str = "corebank.events";

fn transfer_json(event_id: &str, client_id: &str, minor_units: i64) -> String {
    format!(
        r#"{{
            "eventId": "{event_id}",
            "clientId": "{client_id}",
            "occurredAt": "{}",
            "transfer": {{
                "amount": {{"minorUnits": "{minor_units}", "currency": "CNY"}},
                "direction": "TRANSFER_DIRECTION_OUT",
                "counterpartyBank": "Other Bank",
                "ownBank": false,
                "channel": "online",
                "status": "TRANSFER_STATUS_PENDING"
            }}
        }}"#,
        chrono::Utc::now().to_rfc3339()
    )
}

fn payroll(event_id: &str, client_id: &str) -> pb::BankEvent {
    pb::BankEvent {
        event_id: event_id.into(),
        client_id: client_id.into(),
        occurred_at: Some(crm_grpc::wire::timestamp(chrono::Utc::now())),
        kind: Some(pb::bank_event::Kind::PayrollCredit(pb::PayrollCredit {
            employer_id: "EMP-ACME".into(),
            amount: Some(pb::Money {
                minor_units: 2_500_000,
                currency: "CNY".into(),
            }),
        })),
    }
}

async fn dead_letter_reason(app: &TestApp, message_id: &str) -> String {
    let bus = app.operator_bus().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let letters = bus.dead_letters(50).await.unwrap();
        if let Some(letter) = letters
            .iter()
            .find(|letter| letter.envelope.message_id == message_id)
        {
            return letter.reason.clone().unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{message_id} was not dead-lettered: {:?}",
            letters
                .iter()
                .map(|l| (&l.envelope.message_id, &l.reason))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_takes_json_and_protobuf_once_and_dead_letters_what_it_cannot_read() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM event_clients WHERE client_id = 'C-000001'",
        1,
        Duration::from_secs(10),
    )
    .await;

    // JSON: a large transfer out, PENDING → the RM's alert.
    let transfer = transfer_json("feed-tr-1", "C-000001", 80_000_000);
    app.publish_to_feed(FEED, "application/json", "m-1", transfer.as_bytes())
        .await;
    // Protobuf: a salary credit → the client is a payroll client.
    app.publish_to_feed(
        FEED,
        "application/x-protobuf",
        "m-2",
        &payroll("feed-pay-1", "C-000001").encode_to_vec(),
    )
    .await;
    let alert = "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'alert' \
                 AND client_id = 'C-000001'";
    app.wait_for_count(alert, 1, Duration::from_secs(10)).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM payroll_clients WHERE client_id = 'C-000001'",
        1,
        Duration::from_secs(10),
    )
    .await;

    // Resent by core banking (a new message, the same event): no second effect.
    app.publish_to_feed(FEED, "application/json", "m-1-again", transfer.as_bytes())
        .await;
    // Unreadable messages, each followed by a good one that must still go through.
    app.publish_to_feed(
        FEED,
        "application/json",
        "bad-field",
        br#"{"eventId": "x-1", "clientId": "C-000001", "transferRef": "T"}"#,
    )
    .await;
    app.publish_to_feed(FEED, "text/plain", "bad-type", b"hello")
        .await;
    app.publish_to_feed(
        FEED,
        "application/x-protobuf",
        "bad-bytes",
        &[0xff, 0xff, 0xff],
    )
    .await;
    let zero = transfer_json("feed-zero", "C-000001", 0);
    app.publish_to_feed(FEED, "application/json", "bad-amount", zero.as_bytes())
        .await;
    app.publish_to_feed(
        FEED,
        "application/json",
        "m-3",
        transfer_json("feed-tr-2", "C-000001", 90_000_000).as_bytes(),
    )
    .await;
    app.wait_for_count(alert, 2, Duration::from_secs(10)).await;

    assert!(
        dead_letter_reason(&app, "bad-field")
            .await
            .contains("transferRef"),
        "the reason names the unknown field"
    );
    assert!(
        dead_letter_reason(&app, "bad-type")
            .await
            .contains("content-type must be application/json")
    );
    let bus = app.operator_bus().await;
    let letters = bus.dead_letters(50).await.unwrap();
    assert!(
        letters.iter().all(|letter| letter.feed_exchange.as_deref()
            == Some(format!("{}{FEED}", app.queue_prefix).as_str())),
        "each names the feed it came from"
    );
    assert!(
        dead_letter_reason(&app, "bad-bytes")
            .await
            .contains("protobuf payload is not a crm.v1.BankEvent")
    );
    assert!(
        dead_letter_reason(&app, "bad-amount")
            .await
            .contains("amount must be more than zero")
    );
    // Taken once each: the resend changed nothing.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM bank_events WHERE client_id = 'C-000001'")
            .await,
        3
    );
    assert_eq!(app.count(alert).await, 2);
    app.stop().await;
}

/// A burst of messages (which the consumer takes in batches of what the prefetch
/// window holds, several batches at once) is taken whole, each event once: one
/// client's salary credits in concurrent batches wait for each other rather than
/// collide (the first run of this test dead-lettered one on a duplicate key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_the_feed_is_taken_whole() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 1).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    for n in 0..300 {
        let event = payroll(&format!("burst-{n}"), "C-000001");
        app.publish_to_feed(
            FEED,
            "application/x-protobuf",
            &format!("burst-m-{n}"),
            &event.encode_to_vec(),
        )
        .await;
    }
    app.wait_for_count(
        "SELECT COUNT(*) FROM bank_events WHERE event_id LIKE 'burst-%'",
        300,
        Duration::from_secs(20),
    )
    .await;
    app.stop().await;
}

/// A feed message dead-lettered (say, while a rule was broken) and replayed by an
/// operator goes back to the feed's exchange, content-type and all, and is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_feed_message_returns_to_the_feed() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 1).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let exchange = format!("{}{FEED}", app.queue_prefix);
    app.publish_raw(
        "crm.dead",
        "application/x-protobuf",
        "died-once",
        &payroll("replayed-1", "C-000001").encode_to_vec(),
        &[
            ("x-crm-death-reason", "a rule was broken"),
            ("x-crm-feed-exchange", exchange.as_str()),
        ],
    )
    .await;
    let bus = app.operator_bus().await;
    let letters = bus.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].feed_exchange.as_deref(), Some(exchange.as_str()));
    assert_eq!(bus.replay_dead_letters(10).await.unwrap(), 1);
    app.wait_for_count(
        "SELECT COUNT(*) FROM bank_events WHERE event_id = 'replayed-1'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(bus.dead_letters(10).await.unwrap().is_empty());
    app.stop().await;
}

on_both_backends!(an_event_of_a_client_not_yet_in_the_book_is_held_then_applied);

async fn an_event_of_a_client_not_yet_in_the_book_is_held_then_applied(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let mut transfer = payroll("held-1", "C-000777");
    transfer.kind = Some(pb::bank_event::Kind::Transfer(pb::Transfer {
        amount: Some(pb::Money {
            minor_units: 80_000_000,
            currency: "CNY".into(),
        }),
        direction: pb::TransferDirection::Out as i32,
        counterparty_bank: "Other Bank".into(),
        status: pb::TransferStatus::Pending as i32,
        ..Default::default()
    }));
    let results = app
        .events()
        .ingest_events(with_token(
            &system,
            pb::IngestEventsRequest {
                events: vec![transfer],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results[0].accepted && !results[0].duplicate, "{results:?}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM held_events WHERE client_id = 'C-000777'")
            .await,
        1,
        "kept, its rules waiting"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM outflow_alerts").await, 0);

    // Listed once it has waited past the alert time.
    let watch = crm_events::feed_watch::FeedWatch {
        db: app.db.clone(),
        calendar: crm_domain::sla::BusinessCalendar::default(),
        held_alert_minutes: 60,
        silent_minutes: 30,
    };
    let now = chrono::Utc::now();
    let report = watch.run(now).await.unwrap();
    assert!(report.held_too_long.is_empty(), "{report:?}");
    assert_eq!(report.held_events, 1);
    let later = watch.run(now + chrono::Duration::hours(2)).await.unwrap();
    assert_eq!(later.held_too_long.len(), 1, "{later:?}");
    assert_eq!(later.held_too_long[0].client_id, "C-000777");
    assert_eq!(later.held_too_long[0].events, 1);

    // The book announces the client: the held transfer alerts an RM of their
    // branch (the first announcement names no RM yet: the chain picks one).
    app.seed_client("C-000777", "B-001", Some("B-001-RM-2"))
        .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id LIKE 'B-001-RM-%' AND kind = 'alert' \
         AND client_id = 'C-000777'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM held_events").await, 0);
    assert!(
        watch
            .run(now + chrono::Duration::hours(2))
            .await
            .unwrap()
            .held_too_long
            .is_empty()
    );
    app.stop().await;
}

on_both_backends!(a_feed_silent_in_business_hours_is_reported);

async fn a_feed_silent_in_business_hours_is_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    let watch = crm_events::feed_watch::FeedWatch {
        db: app.db.clone(),
        calendar: crm_domain::sla::BusinessCalendar::default(),
        held_alert_minutes: 60,
        silent_minutes: 30,
    };
    let first = watch.run(chrono::Utc::now()).await.unwrap();
    assert_eq!(first.last_event_received_at, None);
    assert!(!first.silent, "nothing ever received is not a silence");
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    app.events()
        .ingest_events(with_token(
            &system,
            pb::IngestEventsRequest {
                events: vec![payroll("quiet-1", "C-000001")],
            },
        ))
        .await
        .unwrap();
    let received = watch
        .run(chrono::Utc::now())
        .await
        .unwrap()
        .last_event_received_at
        .unwrap();
    // A week without events holds five business days (more than four whole).
    let report = watch
        .run(received + chrono::Duration::days(7))
        .await
        .unwrap();
    assert!(report.silent_business_minutes > 4 * 8 * 60, "{report:?}");
    assert!(report.silent, "a week without events: {report:?}");
    let moments_later = watch
        .run(received + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert!(!moments_later.silent, "{moments_later:?}");
    app.stop().await;
}
