//! The client book over PostgreSQL + RabbitMQ and over the embedded default, by the
//! same cases: search and keyset pagination, signed page tokens, tiers with their
//! hysteresis, the audit trail, personal data sealed at rest, the contact log, and
//! one active pair per teller.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::BTreeSet;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

const YUAN: i64 = 100;

fn system(app: &TestApp) -> String {
    app.token("SYS-CORE", Role::System, "HQ-001")
}

fn record(id: &str, name: &str, branch: &str, phone: &str, segments: &[&str]) -> pb::Client {
    pb::Client {
        client_id: id.into(),
        full_name: name.into(),
        national_id: "11010119800101123X".into(),
        phone: phone.into(),
        home_branch_id: branch.into(),
        kind: pb::ClientKind::Individual as i32,
        segments: segments.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn upsert(
    app: &TestApp,
    token: &str,
    client: pb::Client,
) -> Result<pb::Client, tonic::Status> {
    let request = pb::UpsertClientRequest {
        client: Some(client),
    };
    let response = app
        .clients()
        .upsert_client(with_token(token, request))
        .await?;
    Ok(response.into_inner().client.unwrap())
}

async fn assign(app: &TestApp, client_id: &str, primary: &str, wealth: &str) {
    let request = pb::AssignCoverageRequest {
        client_id: client_id.into(),
        primary_rm_id: primary.into(),
        wealth_manager_id: wealth.into(),
        reason: "book test".into(),
        ..Default::default()
    };
    app.clients()
        .assign_coverage(with_token(&system(app), request))
        .await
        .unwrap();
}

/// Every client id a search yields, page by page, and how many pages it took.
async fn search_all(
    app: &TestApp,
    token: &str,
    mut request: pb::SearchClientsRequest,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = app
            .clients()
            .search_clients(with_token(token, request.clone()))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        ids.extend(page.clients.into_iter().map(|c| c.client_id));
        if page.next_page_token.is_empty() {
            return (ids, pages);
        }
        request.page_token = page.next_page_token;
    }
}

/// 40 clients: C-000..C-039. Even ones at B-001, odd at B-002. Names alternate
/// "Wang …" / "Li …"; every fifth is in `coal`; phones are distinct.
async fn seed_book(app: &TestApp) {
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    let token = system(app);
    for n in 0..40 {
        let branch = if n % 2 == 0 { "B-001" } else { "B-002" };
        let name = if n % 4 < 2 {
            format!("Wang {n}")
        } else {
            format!("Li {n}")
        };
        let segments: &[&str] = if n % 5 == 0 {
            &["coal", "payroll"]
        } else {
            &[]
        };
        let mut client = record(
            &format!("C-{n:03}"),
            &name,
            branch,
            &format!("1380000{n:04}"),
            segments,
        );
        client.aum_daily_avg = Some(pb::Money {
            minor_units: i64::from(n) * 250_000 * YUAN,
            currency: "CNY".into(),
        });
        upsert(app, &token, client).await.unwrap();
    }
    // B-001-RM-1 covers C-000..C-009 as primary RM and C-011 as wealth manager.
    for n in 0..10 {
        let branch = if n % 2 == 0 { "B-001" } else { "B-002" };
        let primary = if branch == "B-001" {
            "B-001-RM-1"
        } else {
            "B-002-RM-1"
        };
        let wealth = if primary == "B-001-RM-1" {
            ""
        } else {
            "B-001-RM-1"
        };
        assign(app, &format!("C-{n:03}"), primary, wealth).await;
    }
    assign(app, "C-011", "B-002-RM-2", "B-001-RM-1").await;
}

fn ids(range: impl IntoIterator<Item = u32>) -> Vec<String> {
    range.into_iter().map(|n| format!("C-{n:03}")).collect()
}

async fn search_and_pagination(backend: Backend) {
    let app = spawn_app(backend).await;
    seed_book(&app).await;
    let token = system(&app);
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let all = |size: i32| pb::SearchClientsRequest {
        page_size: size,
        ..Default::default()
    };

    // Pages of 7 over 40 clients: each once, in id order, 6 pages.
    let (found, pages) = search_all(&app, &token, all(7)).await;
    assert_eq!(found, ids(0..40));
    assert_eq!(pages, 6);

    // The RM sees exactly their coverage, in every post; the manager their branch
    // (even ids) — both through the same query path.
    let (found, _) = search_all(&app, &rm, all(3)).await;
    let mut expected = ids(0..10);
    expected.push("C-011".into());
    assert_eq!(found, expected);
    let (found, _) = search_all(&app, &manager, all(4)).await;
    assert_eq!(found, ids((0..40).filter(|n| n % 2 == 0)));

    // Each filter, alone and combined.
    let by = |request: pb::SearchClientsRequest| search_all(&app, &token, request);
    let (found, _) = by(pb::SearchClientsRequest {
        name_prefix: "Wang".into(),
        ..all(5)
    })
    .await;
    assert_eq!(found, ids((0..40).filter(|n| n % 4 < 2)));
    // The same answer whatever the case, on both databases.
    let (lowercase, _) = by(pb::SearchClientsRequest {
        name_prefix: "wANG".into(),
        ..all(50)
    })
    .await;
    assert_eq!(lowercase, found);
    let (found, _) = by(pb::SearchClientsRequest {
        phone: "13800000017".into(),
        ..all(5)
    })
    .await;
    assert_eq!(found, ids([17]));
    let (found, _) = by(pb::SearchClientsRequest {
        segment: "coal".into(),
        ..all(2)
    })
    .await;
    assert_eq!(found, ids((0..40).step_by(5)));
    // 250,000 CNY steps: WEALTH from n = 4, HNW from 20, PRIVATE from 40 (none).
    let (found, _) = by(pb::SearchClientsRequest {
        tier_min: pb::Tier::Hnw as i32,
        ..all(50)
    })
    .await;
    assert_eq!(found, ids(20..40));
    let (found, _) = by(pb::SearchClientsRequest {
        rm_id: "B-001-RM-1".into(),
        branch_id: "B-002".into(),
        ..all(50)
    })
    .await;
    assert_eq!(found, ids([1, 3, 5, 7, 9, 11]));
    let (found, _) = by(pb::SearchClientsRequest {
        name_prefix: "Li".into(),
        segment: "coal".into(),
        branch_id: "B-001".into(),
        ..all(50)
    })
    .await;
    assert_eq!(found, ids([10, 30]));
    // LIKE wildcards in a prefix are literal characters.
    let (found, _) = by(pb::SearchClientsRequest {
        name_prefix: "%".into(),
        ..all(50)
    })
    .await;
    assert!(found.is_empty());

    // A page token belongs to one caller and one search.
    let first = app
        .clients()
        .search_clients(with_token(&token, all(5)))
        .await
        .unwrap()
        .into_inner();
    let reuse = |who: &str, request: pb::SearchClientsRequest| {
        let mut clients = app.clients();
        let request = with_token(who, request);
        async move { clients.search_clients(request).await.unwrap_err() }
    };
    let foreign = pb::SearchClientsRequest {
        page_token: first.next_page_token.clone(),
        ..all(5)
    };
    let error = reuse(&manager, foreign.clone()).await;
    assert_eq!(error.code(), Code::InvalidArgument);
    let other_filters = pb::SearchClientsRequest {
        segment: "coal".into(),
        ..foreign.clone()
    };
    assert_eq!(
        reuse(&token, other_filters).await.code(),
        Code::InvalidArgument
    );
    let forged = pb::SearchClientsRequest {
        page_token: format!(
            "QyAwMDA.{}",
            first.next_page_token.split_once('.').unwrap().1
        ),
        ..all(5)
    };
    assert_eq!(reuse(&token, forged).await.code(), Code::InvalidArgument);

    // Bad filters: one violation per field, nothing searched.
    let error = reuse(
        &token,
        pb::SearchClientsRequest {
            phone: "138-abc".into(),
            tier_min: 99,
            segment: "Coal!".into(),
            rm_id: "rm one".into(),
            page_size: 9999,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(error.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&error);
    let fields: BTreeSet<String> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    let want: BTreeSet<String> = ["phone", "tier_min", "segment", "rm_id", "page_size"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(fields, want);
    assert!(
        !format!("{error:?}").contains("138-abc"),
        "the bad phone is not echoed"
    );

    // A teller must name a client or a phone; a campaign admin may not search by phone.
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    assert_eq!(reuse(&teller, all(5)).await.code(), Code::PermissionDenied);
    let (found, _) = search_all(
        &app,
        &teller,
        pb::SearchClientsRequest {
            phone: "13800000004".into(),
            ..all(5)
        },
    )
    .await;
    assert_eq!(found, ids([4]));
    let (found, _) = search_all(
        &app,
        &teller,
        pb::SearchClientsRequest {
            phone: "13800000005".into(),
            ..all(5)
        },
    )
    .await;
    assert!(
        found.is_empty(),
        "a client of another branch is not found by a teller"
    );
    let admin = app.token("CA-1", Role::CampaignAdmin, "HQ-001");
    let by_phone = pb::SearchClientsRequest {
        phone: "13800000004".into(),
        ..all(5)
    };
    assert_eq!(reuse(&admin, by_phone).await.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn outbox_count(app: &TestApp, message_type: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM outbox WHERE message_type = '{message_type}'"
    ))
    .await
}

async fn tiers_follow_the_average_with_hysteresis(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let token = system(&app);
    let with_aum = |yuan: i64| {
        let mut client = record("C-TIER", "Zhao Tier", "B-001", "13900000000", &[]);
        client.aum_daily_avg = Some(pb::Money {
            minor_units: yuan * YUAN,
            currency: "CNY".into(),
        });
        client
    };
    let tier_of = |client: pb::Client| pb::Tier::try_from(client.tier).unwrap();
    // (30-day average, tier afterwards, tier_changed messages so far)
    let steps = [
        (999_999, pb::Tier::Mass, 1), // a new client's first tier is announced
        (1_000_000, pb::Tier::Wealth, 2),
        (990_000, pb::Tier::Wealth, 2), // within 5% below the bound: kept
        (950_000, pb::Tier::Wealth, 2),
        (1_020_000, pb::Tier::Wealth, 2),
        (949_999, pb::Tier::Mass, 3), // below the margin: down
        (5_000_000, pb::Tier::Hnw, 4),
        (10_000_000, pb::Tier::Private, 5),
        (4_700_000, pb::Tier::Wealth, 6), // below HNW's margin too
    ];
    for (yuan, tier, announced) in steps {
        let stored = upsert(&app, &token, with_aum(yuan)).await.unwrap();
        assert_eq!(tier_of(stored), tier, "at {yuan} CNY");
        assert_eq!(
            outbox_count(&app, "client.tier_changed").await,
            announced,
            "at {yuan} CNY"
        );
    }
    // An update without balance data keeps the average and the tier.
    let mut plain = with_aum(0);
    plain.aum_daily_avg = None;
    assert_eq!(
        tier_of(upsert(&app, &token, plain.clone()).await.unwrap()),
        pb::Tier::Wealth
    );
    // Staff may edit contact data but not balances.
    assign(&app, "C-TIER", "B-001-RM-1", "").await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let error = upsert(&app, &rm, with_aum(20_000_000)).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let mut renamed = plain;
    renamed.full_name = "Zhao Renamed".into();
    assert_eq!(
        upsert(&app, &rm, renamed).await.unwrap().full_name,
        "Zhao Renamed"
    );
    // Non-CNY averages can't be tiered.
    let mut dollars = with_aum(1);
    dollars.aum_daily_avg.as_mut().unwrap().currency = "USD".into();
    assert_eq!(
        upsert(&app, &token, dollars).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    app.stop().await;
}

async fn raw_text(app: &TestApp, sql: &str) -> Vec<String> {
    app.db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// Two branches, and client C-AUD of B-001 covered by B-001-RM-1, created by
/// the core-banking system.
async fn audited_client(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    let token = system(&app);
    upsert(
        &app,
        &token,
        record("C-AUD", "Sun Audit", "B-001", "13712345678", &["coal"]),
    )
    .await
    .unwrap();
    assign(&app, "C-AUD", "B-001-RM-1", "").await;
    app
}

async fn get_client(
    app: &TestApp,
    token: &str,
    client_id: &str,
) -> Result<pb::Client, tonic::Status> {
    Ok(app
        .clients()
        .get_client(with_token(
            token,
            pb::GetClientRequest {
                client_id: client_id.into(),
            },
        ))
        .await?
        .into_inner()
        .client
        .unwrap())
}

async fn trail_of(
    app: &TestApp,
    token: &str,
    request: pb::ListAuditEventsRequest,
) -> Vec<pb::AuditEvent> {
    app.clients()
        .list_audit_events(with_token(token, request))
        .await
        .unwrap()
        .into_inner()
        .audit_events
}

async fn personal_data_is_sealed_at_rest_and_shown_whole_or_masked_by_role(backend: Backend) {
    let app = audited_client(backend).await;
    let stored = raw_text(
        &app,
        "SELECT national_id || ' ' || phone || ' ' || national_id_hash || ' ' || phone_hash \
         FROM clients WHERE client_id = 'C-AUD'",
    )
    .await;
    for needle in [
        "11010119800101123X",
        "13712345678",
        "1101011980",
        "12345678",
    ] {
        assert!(
            !stored[0].contains(needle),
            "{needle} is stored in clear: {}",
            stored[0]
        );
    }
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let whole = get_client(&app, &rm, "C-AUD").await.unwrap();
    assert_eq!(
        (whole.national_id.as_str(), whole.phone.as_str()),
        ("11010119800101123X", "13712345678")
    );
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let masked = get_client(&app, &teller, "C-AUD").await.unwrap();
    assert_eq!(
        (masked.national_id.as_str(), masked.phone.as_str()),
        ("1101**********123X", "137****5678")
    );
    app.stop().await;
}

async fn reads_writes_and_refusals_are_on_the_trail_with_actor_role_and_request_id(
    backend: Backend,
) {
    let app = audited_client(backend).await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let other_rm = app.token("B-002-RM-1", Role::Rm, "B-002");
    get_client(&app, &rm, "C-AUD").await.unwrap();
    get_client(&app, &teller, "C-AUD").await.unwrap();
    assert_eq!(
        get_client(&app, &other_rm, "C-AUD")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut traced = with_token(
        &rm,
        pb::GetClientRequest {
            client_id: "C-AUD".into(),
        },
    );
    traced
        .metadata_mut()
        .insert("x-request-id", "req-audit-1".parse().unwrap());
    app.clients().get_client(traced).await.unwrap();
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let trail = trail_of(
        &app,
        &manager,
        pb::ListAuditEventsRequest {
            client_id: "C-AUD".into(),
            ..Default::default()
        },
    )
    .await;
    let lines: Vec<[&str; 4]> = trail
        .iter()
        .rev() // oldest first
        .map(|e| {
            [
                e.actor_id.as_str(),
                e.actor_role.as_str(),
                e.action.as_str(),
                e.decision.as_str(),
            ]
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ["SYS-CORE", "system", "client.create", "allowed"],
            ["SYS-CORE", "system", "client.assign_coverage", "allowed"],
            ["B-001-RM-1", "rm", "client.read", "allowed"],
            ["B-001-T-1", "teller", "client.read", "allowed"],
            ["B-002-RM-1", "rm", "client.read", "denied"],
            ["B-001-RM-1", "rm", "client.read", "allowed"],
        ]
    );
    assert_eq!(trail[0].request_id, "req-audit-1");
    app.stop().await;
}

async fn the_trail_is_read_by_actor_and_time_range_in_pages(backend: Backend) {
    let app = audited_client(backend).await;
    let token = system(&app);
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    get_client(&app, &rm, "C-AUD").await.unwrap();
    get_client(&app, &rm, "C-AUD").await.unwrap();
    // By actor and time range, paged.
    let by_actor =
        |from: Option<prost_types::Timestamp>, page_token: String| pb::ListAuditEventsRequest {
            actor_id: "B-001-RM-1".into(),
            from_time: from,
            page_size: 1,
            page_token,
            ..Default::default()
        };
    let first = app
        .clients()
        .list_audit_events(with_token(&token, by_actor(None, String::new())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.audit_events.len(), 1);
    let second = app
        .clients()
        .list_audit_events(with_token(&token, by_actor(None, first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.audit_events.len(), 1);
    assert!(second.audit_events[0].audit_event_id < first.audit_events[0].audit_event_id);
    let future = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let later = app
        .clients()
        .list_audit_events(with_token(&token, by_actor(Some(future), String::new())))
        .await
        .unwrap()
        .into_inner();
    assert!(later.audit_events.is_empty());
    // Neither client nor actor: a bad request.
    let error = app
        .clients()
        .list_audit_events(with_token(&token, pb::ListAuditEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);

    app.stop().await;
}

async fn a_search_and_a_contact_log_read_leave_their_lines_on_the_trail(backend: Backend) {
    let app = audited_client(backend).await;
    let token = system(&app);
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let manager = app.token("B-001-M", Role::BranchManager, "B-001");
    let shown = app
        .clients()
        .search_clients(with_token(
            &manager,
            pb::SearchClientsRequest {
                segment: "coal".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert_eq!(shown.len(), 1);
    let count = |sql: &str| {
        let sql = sql.to_owned();
        let app = &app;
        async move { app.count(&sql).await }
    };
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'client.search' \
             AND actor_id = 'B-001-M' AND client_ids = 'C-AUD' AND reason = 'segment'"
        )
        .await,
        1
    );
    // …and the client's trail shows the search.
    let trail = app
        .clients()
        .list_audit_events(with_token(
            &token,
            pb::ListAuditEventsRequest {
                client_id: "C-AUD".into(),
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(
        (
            trail[0].action.as_str(),
            trail[0].client_id.as_str(),
            trail[0].actor_id.as_str()
        ),
        ("client.search", "C-AUD", "B-001-M")
    );
    app.clients()
        .list_interactions(with_token(
            &rm,
            pb::ListInteractionsRequest {
                client_id: "C-AUD".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_events WHERE action = 'interaction.list'").await,
        1
    );
    app.stop().await;
}

async fn an_unknown_id_and_a_foreign_client_get_the_same_answer_from_a_bounded_scope(
    backend: Backend,
) {
    let app = audited_client(backend).await;
    let token = system(&app);
    let other_rm = app.token("B-002-RM-1", Role::Rm, "B-002");
    let foreign = get_client(&app, &other_rm, "C-AUD").await.unwrap_err();
    let missing = get_client(&app, &other_rm, "C-NOBODY").await.unwrap_err();
    assert_eq!(
        (foreign.code(), foreign.message()),
        (missing.code(), missing.message())
    );
    // Only roles that see every client learn that an id doesn't exist.
    assert_eq!(
        get_client(&app, &token, "C-NOBODY")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    app.stop().await;
}

async fn a_branch_managers_view_of_the_trail_stays_in_their_branch(backend: Backend) {
    let app = audited_client(backend).await;
    let other_rm = app.token("B-002-RM-1", Role::Rm, "B-002");
    get_client(&app, &other_rm, "C-AUD").await.unwrap_err();
    let b2_manager = app.token("B-002-M", Role::BranchManager, "B-002");
    let b2_trail = app
        .clients()
        .list_audit_events(with_token(
            &b2_manager,
            pb::ListAuditEventsRequest {
                actor_id: "B-002-RM-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(!b2_trail.is_empty());
    assert!(b2_trail.iter().all(|e| e.actor_id == "B-002-RM-1"));
    let error = app
        .clients()
        .list_audit_events(with_token(
            &b2_manager,
            pb::ListAuditEventsRequest {
                client_id: "C-AUD".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    app.stop().await;
}

async fn coverage_posts_are_held_by_rms_and_managers_not_tellers(backend: Backend) {
    let app = audited_client(backend).await;
    let token = system(&app);
    let error = app
        .clients()
        .assign_coverage(with_token(
            &token,
            pb::AssignCoverageRequest {
                client_id: "C-AUD".into(),
                primary_rm_id: "B-001-T-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);

    app.stop().await;
}

async fn the_database_refuses_to_rewrite_the_audit_trail(backend: Backend) {
    let app = audited_client(backend).await;
    let mut statements = vec![
        "UPDATE audit_events SET decision = 'allowed'",
        "DELETE FROM audit_events",
    ];
    if backend == Backend::Distributed {
        statements.push("TRUNCATE audit_events");
    }
    for statement in statements {
        let result = app
            .db
            .execute_raw(Statement::from_string(
                app.db.get_database_backend(),
                statement.to_owned(),
            ))
            .await;
        assert!(result.is_err(), "{statement} must fail");
    }
    app.stop().await;
}

async fn contact_log(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    let token = system(&app);
    upsert(
        &app,
        &token,
        record("C-LOG", "Qian Log", "B-001", "13600000000", &[]),
    )
    .await
    .unwrap();
    assign(&app, "C-LOG", "B-001-RM-1", "").await;
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let now = chrono::Utc::now().timestamp();
    let at = |seconds_ago: i64| prost_types::Timestamp {
        seconds: now - seconds_ago,
        nanos: 123_456_789,
    };
    // Logged out of order: last_contact_at only moves forward.
    for (ago, summary) in [(3600, "visit"), (60, "call back"), (7200, "first call")] {
        app.clients()
            .log_interaction(with_token(
                &rm,
                pb::LogInteractionRequest {
                    client_id: "C-LOG".into(),
                    channel: pb::InteractionChannel::Phone as i32,
                    summary: summary.into(),
                    outcome: "interested".into(),
                    occurred_at: Some(at(ago)),
                },
            ))
            .await
            .unwrap();
    }
    let client = app
        .clients()
        .get_client(with_token(
            &rm,
            pb::GetClientRequest {
                client_id: "C-LOG".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert_eq!(client.last_contact_at.unwrap().seconds, now - 60);
    assert_eq!(outbox_count(&app, "client.interaction_logged").await, 3);
    // Newest first, one per page.
    let mut summaries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .clients()
            .list_interactions(with_token(
                &rm,
                pb::ListInteractionsRequest {
                    client_id: "C-LOG".into(),
                    page_size: 1,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        summaries.extend(page.interactions.into_iter().map(|i| i.summary));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(summaries, ["call back", "visit", "first call"]);
    // A contact in the future, without a channel or summary: each named, nothing written.
    let error = app
        .clients()
        .log_interaction(with_token(
            &rm,
            pb::LogInteractionRequest {
                client_id: "C-LOG".into(),
                occurred_at: Some(at(-86_400)),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&error);
    let fields: BTreeSet<String> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(
        fields,
        ["channel", "occurred_at", "summary"]
            .map(String::from)
            .into()
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM interactions").await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_teller_has_one_active_pair_and_pairs_carry_their_dates() {
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 3).await;
    let token = system(&app);
    let pair = |rm: &str, until: Option<pb::Date>| pb::PairTellerRequest {
        teller_id: "B-001-T-1".into(),
        rm_id: rm.into(),
        valid_from: Some(pb::Date {
            year: 2026,
            month: 1,
            day: 1,
        }),
        valid_until: until,
    };
    let answer = app
        .directory()
        .pair_teller(with_token(
            &token,
            pair(
                "B-001-RM-3",
                Some(pb::Date {
                    year: 2026,
                    month: 12,
                    day: 31,
                }),
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .pair
        .unwrap();
    assert_eq!(answer.valid_until.unwrap().month, 12);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM teller_pairs WHERE teller_id = 'B-001-T-1' AND active")
            .await,
        1
    );
    let active_rm = raw_text(
        &app,
        "SELECT rm_id FROM teller_pairs WHERE teller_id = 'B-001-T-1' AND active",
    )
    .await;
    assert_eq!(active_rm, ["B-001-RM-3"]);
    // The database refuses a second active pair however it is attempted.
    let second = app
        .db
        .execute_raw(Statement::from_string(
            app.db.get_database_backend(),
            "INSERT INTO teller_pairs (pair_id, teller_id, rm_id, valid_from, active, created_at) \
             VALUES ('p-x', 'B-001-T-1', 'B-001-RM-1', '2026-01-01', true, now())"
                .to_owned(),
        ))
        .await;
    assert!(second.is_err());
    // Bad dates: one violation each.
    let error = app
        .directory()
        .pair_teller(with_token(
            &token,
            pb::PairTellerRequest {
                valid_from: Some(pb::Date {
                    year: 2026,
                    month: 13,
                    day: 1,
                }),
                ..pair("B-001-RM-1", None)
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    app.stop().await;
}

on_both_backends!(
    search_and_pagination,
    tiers_follow_the_average_with_hysteresis,
    personal_data_is_sealed_at_rest_and_shown_whole_or_masked_by_role,
    reads_writes_and_refusals_are_on_the_trail_with_actor_role_and_request_id,
    the_trail_is_read_by_actor_and_time_range_in_pages,
    a_search_and_a_contact_log_read_leave_their_lines_on_the_trail,
    an_unknown_id_and_a_foreign_client_get_the_same_answer_from_a_bounded_scope,
    a_branch_managers_view_of_the_trail_stays_in_their_branch,
    coverage_posts_are_held_by_rms_and_managers_not_tellers,
    the_database_refuses_to_rewrite_the_audit_trail,
    contact_log,
);
