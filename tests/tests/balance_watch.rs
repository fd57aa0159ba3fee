//! Balance watch across three services: balance snapshots (in any order) give the
//! events service a client's trailing daily average; the client book's tier follows
//! it (the feed then its one writer); the tier change asks the RM for a welcome
//! follow-up; a sudden drop for a watched client raises an alert naming the rule
//! and the figures. Over PostgreSQL + RabbitMQ and the embedded default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use chrono::{Datelike, NaiveDate, Utc, Weekday};
use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_proto::v1::bank_event::Kind;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};

/// Monday of last week (so every day of it is in the past).
fn last_monday() -> NaiveDate {
    let today = Utc::now().date_naive();
    let this_monday =
        today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let monday = this_monday - chrono::Duration::days(7);
    assert_eq!(monday.weekday(), Weekday::Mon);
    monday
}

fn snapshot(event_id: &str, day: NaiveDate, cny: i64, hours_after_close: i64) -> pb::BankEvent {
    let occurred_at =
        day.and_hms_opt(17, 0, 0).unwrap().and_utc() + chrono::Duration::hours(hours_after_close);
    pb::BankEvent {
        event_id: event_id.into(),
        client_id: "C-000001".into(),
        occurred_at: Some(crm_grpc::wire::timestamp(occurred_at)),
        kind: Some(Kind::BalanceSnapshot(pb::BalanceSnapshot {
            balance: Some(pb::Money {
                minor_units: cny * 100,
                currency: "CNY".into(),
            }),
            as_of_date: Some(crm_grpc::wire::date_to_proto(day)),
        })),
    }
}

async fn ingest(app: &TestApp, events: Vec<pb::BankEvent>) {
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let results = app
        .events()
        .ingest_events(with_token(&system, pb::IngestEventsRequest { events }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results.iter().all(|r| r.accepted), "{results:?}");
}

async fn client(app: &TestApp) -> pb::Client {
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    app.clients()
        .get_client(with_token(
            &system,
            pb::GetClientRequest {
                client_id: "C-000001".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap()
}

on_both_backends!(
    the_tier_follows_the_balance_feed_and_a_drop_alerts_the_rm,
    a_payroll_client_is_tagged_and_cultivated_into_wealth,
);

/// A salary credit tags the client `payroll` (kept through UpsertClient); when
/// their average crosses into WEALTH the RM's follow-up is a cultivation call.
async fn a_payroll_client_is_tagged_and_cultivated_into_wealth(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let payday = last_monday();
    ingest(
        &app,
        vec![pb::BankEvent {
            event_id: "salary-1".into(),
            client_id: "C-000001".into(),
            occurred_at: Some(crm_grpc::wire::timestamp(
                payday.and_hms_opt(9, 0, 0).unwrap().and_utc(),
            )),
            kind: Some(Kind::PayrollCredit(pb::PayrollCredit {
                employer_id: "EMP-ACME".into(),
                amount: Some(pb::Money {
                    minor_units: 3_000_000,
                    currency: "CNY".into(),
                }),
            })),
        }],
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM clients WHERE client_id = 'C-000001' \
         AND payroll_employer_id = 'EMP-ACME'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(client(&app).await.segments.contains(&"payroll".to_owned()));
    // Core banking's UpsertClient with other segments keeps the tag.
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let mut update = client(&app).await;
    update.segments = vec!["sme_owner".into()];
    app.clients()
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(update),
            },
        ))
        .await
        .unwrap();
    let segments = client(&app).await.segments;
    assert!(segments.contains(&"payroll".to_owned()), "{segments:?}");
    assert!(segments.contains(&"sme_owner".to_owned()), "{segments:?}");
    // 2,000,000 CNY a day: into WEALTH, and the follow-up is the cultivation call.
    ingest(
        &app,
        vec![
            snapshot("bal-1", payday, 2_000_000, 1),
            snapshot("bal-2", payday + chrono::Duration::days(1), 2_000_000, 1),
        ],
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'follow_up' \
         AND title = 'Payroll client now wealth: cultivation follow-up'",
        1,
        Duration::from_secs(10),
    )
    .await;
    app.stop().await;
}

async fn the_tier_follows_the_balance_feed_and_a_drop_alerts_the_rm(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let monday = last_monday();
    let day = |n: i64| monday + chrono::Duration::days(n);
    // Wednesday first, then Monday and Tuesday: the order they arrive in does not
    // matter. 6,000,000 CNY each day.
    ingest(
        &app,
        vec![
            snapshot("bal-wed", day(2), 6_000_000, 1),
            snapshot("bal-mon", day(0), 6_000_000, 1),
            snapshot("bal-tue", day(1), 6_000_000, 1),
        ],
    )
    .await;
    // The book's tier follows the average: HNW.
    app.wait_for_count(
        "SELECT COUNT(*) FROM clients WHERE client_id = 'C-000001' AND tier = 'hnw'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        client(&app).await.aum_daily_avg.unwrap().minor_units,
        600_000_000
    );
    // The upgrade is the RM's welcome follow-up.
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'follow_up' \
         AND title = 'Welcome to hnw: upgrade follow-up'",
        1,
        Duration::from_secs(10),
    )
    .await;

    // Core banking's UpsertClient no longer moves an average the feed owns.
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let mut stale = client(&app).await;
    stale.aum_daily_avg = Some(pb::Money {
        minor_units: 100,
        currency: "CNY".into(),
    });
    app.clients()
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(stale),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        client(&app).await.aum_daily_avg.unwrap().minor_units,
        600_000_000
    );

    // Thursday closes at 3,000,000: down 50% in a day, for a client averaging over
    // the watch threshold. An earlier snapshot of Thursday arriving later changes
    // nothing.
    ingest(&app, vec![snapshot("bal-thu", day(3), 3_000_000, 2)]).await;
    ingest(&app, vec![snapshot("bal-thu-early", day(3), 9_000_000, 1)]).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM work_items WHERE rm_id = 'B-001-RM-1' AND kind = 'alert' \
         AND title = 'Balance down 50% in a day' AND detail LIKE '%Rule: balance drop over 30%' \
         AND detail LIKE '%3000000.00 CNY%6000000.00 CNY%'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM daily_balances WHERE client_id = 'C-000001' \
             AND day = '{}' AND balance_minor = 300000000",
            day(3)
        ))
        .await,
        1,
        "the later snapshot of the day stands"
    );
    // (6 + 6 + 6 + 3) / 4 = 5,250,000: still HNW (no flapping), the average moved.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let client = client(&app).await;
        if client.aum_daily_avg.as_ref().unwrap().minor_units == 525_000_000 {
            assert_eq!(client.tier, pb::Tier::Hnw as i32);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{client:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two snapshots of Friday in one batch, the later first: the later stands.
    ingest(
        &app,
        vec![
            snapshot("bal-fri-late", day(4), 5_000_000, 3),
            snapshot("bal-fri-early", day(4), 1_000_000, 1),
        ],
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM daily_balances WHERE client_id = 'C-000001' \
             AND day = '{}' AND balance_minor = 500000000 AND event_id = 'bal-fri-late'",
            day(4)
        ))
        .await,
        1
    );
    app.stop().await;
}
