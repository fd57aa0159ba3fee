//! Live work-item streams are bounded: a person may hold a few at once, and a
//! stream ends when the token that opened it expires.

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
                .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest {}))
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
        .watch_work_items(with_token(&other, pb::WatchWorkItemsRequest {}))
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
        .watch_work_items(with_token(&short_lived, pb::WatchWorkItemsRequest {}))
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

on_both_backends!(
    one_person_may_hold_five_streams_and_no_more,
    a_stream_ends_when_its_token_expires,
);
