//! Fault test: RabbitMQ connections are cut and restored while tellers keep
//! referring. Every referral must reach its RM's queue and live stream exactly once.
//!
//! `rabbitmqctl close_all_connections` hits every test on the broker, so the test is
//! `#[ignore]`d: `make test` runs the ignored tests alone, one at a time, after all
//! the others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, spawn_app, with_token};
use futures::StreamExt;
use tokio::sync::Mutex;

const REFERRALS: usize = 1000;

fn cut_broker_connections() {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "crm fault test"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "cuts every broker connection: `make test` runs it alone, after the rest"]
async fn every_referral_reaches_its_rm_exactly_once_while_the_broker_connections_are_cut() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 3).await;

    // Every RM and the manager watch their streams; count what each item id got.
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut watchers = Vec::new();
    for staff in ["B-001-RM-1", "B-001-RM-2", "B-001-RM-3", "B-001-M"] {
        let role = if staff.ends_with("-M") {
            Role::BranchManager
        } else {
            Role::Rm
        };
        let token = app.token(staff, role, "B-001");
        let mut stream = app
            .referrals()
            .watch_work_items(with_token(&token, pb::WatchWorkItemsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        let seen = seen.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(response)) = stream.next().await {
                let item = response.work_item.unwrap();
                *seen.lock().await.entry(item.work_item_id).or_default() += 1;
            }
        }));
    }

    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let creator = {
        let referrals = app.referrals();
        tokio::spawn(async move {
            futures::stream::iter(0..REFERRALS)
                .for_each_concurrent(8, |n| {
                    let mut referrals = referrals.clone();
                    let teller = teller.clone();
                    async move {
                        let request = pb::CreateReferralRequest {
                            idempotency_key: format!("fault-{n}"),
                            client_id: format!("C-{n:06}"),
                            need: pb::Need::LargeDeposit as i32,
                            priority: pb::Priority::Normal as i32,
                            ..Default::default()
                        };
                        // A referral is accepted once; a retry with its key is safe.
                        for _ in 0..20 {
                            if referrals
                                .create_referral(with_token(&teller, request.clone()))
                                .await
                                .is_ok()
                            {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        panic!("referral {n} was never accepted");
                    }
                })
                .await;
        })
    };

    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cut_broker_connections();
    }
    creator.await.unwrap();

    assert_eq!(
        app.count("SELECT COUNT(*) FROM referrals").await,
        REFERRALS as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM work_items").await,
        REFERRALS as i64
    );
    app.wait_for_count(
        "SELECT COUNT(*) FROM outbox WHERE source = 'referrals' AND sent_at IS NOT NULL",
        2 * REFERRALS as i64,
        Duration::from_secs(60),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = seen.lock().await.len();
        if delivered >= REFERRALS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {delivered} of {REFERRALS} items reached the streams"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().await;
    assert_eq!(seen.len(), REFERRALS);
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count != 1).collect();
    assert!(twice.is_empty(), "items sent more than once: {twice:?}");
    for watcher in watchers {
        watcher.abort();
    }
    drop(seen);
    app.stop().await;
}

/// Five items reassigned away while the phone's live queue did not exist (every
/// broker connection cut a moment before) still reach the phone as done: after a
/// reconnect the stream reads again every item it has shown, not only the open
/// ones, so it converges to the truth by construction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "cuts every broker connection: `make test` runs it alone, after the rest"]
async fn items_that_went_away_during_a_broker_cut_reach_the_phone_as_done() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 3).await;
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut referral_ids = Vec::new();
    for n in 0..5 {
        let client = format!("C-CUT-{n}");
        app.seed_client(&client, "B-001", Some("B-001-RM-1")).await;
        let created = app
            .referrals()
            .create_referral(with_token(
                &teller,
                pb::CreateReferralRequest {
                    idempotency_key: format!("cut-{n}"),
                    client_id: client,
                    need: pb::Need::Loan as i32,
                    priority: pb::Priority::Normal as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .referral
            .unwrap();
        referral_ids.push(created.referral_id);
    }
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut open = HashMap::new();
    while open.len() < 5 {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the open items")
            .unwrap()
            .unwrap()
            .work_item
            .unwrap();
        open.insert(item.work_item_id.clone(), item.source_id.clone());
    }

    cut_broker_connections();
    for referral_id in &referral_ids {
        app.referrals()
            .reassign_referral(with_token(
                &manager,
                pb::ReassignReferralRequest {
                    referral_id: referral_id.clone(),
                    rm_id: "B-001-RM-3".into(),
                    reason: "RM-1 called away".into(),
                },
            ))
            .await
            .unwrap();
    }

    let mut done = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while done.len() < 5 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let item = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 5 reached the phone as done", done.len()))
            .unwrap()
            .unwrap()
            .work_item
            .unwrap();
        if item.state == pb::WorkItemState::Done as i32 && open.contains_key(&item.work_item_id) {
            done.insert(item.work_item_id);
        }
    }
    app.stop().await;
}

fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts the broker's app again however the test ends.
struct StartAppOnDrop;

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
    }
}

async fn wait_for_health(
    health: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    want: tonic_health::pb::health_check_response::ServingStatus,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health stayed {status:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole broker stopped: health stays SERVING (a replica leaves rotation
/// for its database, not for the broker: the outbox keeps taking writes), and
/// RPCs are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the broker: `make test` runs it alone, after the rest"]
async fn health_stays_serving_while_the_broker_is_away() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let app = spawn_app(Backend::Distributed).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    wait_for_health(&mut health, ServingStatus::Serving, Duration::from_secs(10)).await;
    let restart = StartAppOnDrop;
    rabbitmqctl(&["stop_app"]);
    // Several health rounds (every 2 s) with the broker gone.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        wait_for_health(&mut health, ServingStatus::Serving, Duration::from_secs(1)).await;
    }
    rabbitmqctl(&["start_app"]);
    drop(restart);
    wait_for_health(&mut health, ServingStatus::Serving, Duration::from_secs(60)).await;
    app.stop().await;
}
