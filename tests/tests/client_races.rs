//! An RM's edit of a client record and core banking's new balance data, at the
//! same moment, both stand: the RM's write never rolls back the average AUM and
//! tier core banking just set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, spawn_app, with_token};

fn client(id: &str, name: &str, aum_cny: Option<i64>) -> pb::Client {
    pb::Client {
        client_id: id.into(),
        full_name: name.into(),
        national_id: "11010119800101123X".into(),
        phone: "13812345678".into(),
        home_branch_id: "B-001".into(),
        kind: pb::ClientKind::Individual as i32,
        aum_daily_avg: aum_cny.map(|cny| pb::Money {
            minor_units: cny * 100,
            currency: "CNY".into(),
        }),
        ..Default::default()
    }
}

async fn upsert(app: &TestApp, token: &str, record: pb::Client) {
    app.clients()
        .upsert_client(with_token(
            token,
            pb::UpsertClientRequest {
                client: Some(record),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rms_edit_beside_core_bankings_update_loses_neither() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    let clients: Vec<String> = (0..30).map(|n| format!("C-RACE-{n:03}")).collect();
    for id in &clients {
        app.seed_client(id, "B-001", Some("B-001-RM-1")).await;
    }
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut both = Vec::new();
    for id in &clients {
        let (app_a, app_b) = (&app, &app);
        let (system, rm) = (system.clone(), rm.clone());
        both.push(async move {
            tokio::join!(
                upsert(app_a, &system, client(id, "Core Name", Some(6_000_000))),
                upsert(app_b, &rm, client(id, "Preferred Name", None)),
            )
        });
    }
    futures::future::join_all(both).await;
    let kept = app
        .count(
            "SELECT COUNT(*) FROM clients WHERE client_id LIKE 'C-RACE-%' \
             AND aum_minor_units = 600000000 AND tier = 'hnw'",
        )
        .await;
    assert_eq!(
        kept, 30,
        "every client keeps core banking's average and tier"
    );
    app.stop().await;
}
