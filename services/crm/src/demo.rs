//! `crm demo`: a small bank on the embedded default, and a teller's referral
//! followed to the RM's phone, printed so a person can follow it.

use std::time::{Duration, Instant};

use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1::{
    self as pb, client_service_client::ClientServiceClient,
    directory_service_client::DirectoryServiceClient, event_service_client::EventServiceClient,
    referral_service_client::ReferralServiceClient, report_service_client::ReportServiceClient,
};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

struct Caller {
    channel: Channel,
    token: String,
}

impl Caller {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = format!("Bearer {}", self.token).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

pub async fn run(client_count: u32) -> anyhow::Result<()> {
    let folder = std::env::temp_dir().join(format!("crm-demo-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&folder)?;
    let database_url = format!("sqlite://{}?mode=rwc", folder.join("demo.db").display());
    let secret: String = {
        let mut rng = rand::rng();
        (0..32)
            .map(|_| char::from(rng.random_range(b'a'..=b'z')))
            .collect()
    };
    println!("== RM CRM demo: embedded default (SQLite + in-process transport)");
    let shutdown = CancellationToken::new();
    let app = crm_runtime::App::build(
        &crm_runtime::Settings::for_local_app(
            database_url,
            None,
            None,
            String::new(),
            secret.clone(),
        )?,
        &crm_runtime::ModuleSettings::defaults(crm::MODULES)?,
        crm::MODULES,
        shutdown.clone(),
    )
    .await?;
    let addr = app.local_addr()?;
    let db = app.infra().db.clone();
    let server = tokio::spawn(app.run());
    println!("   server on {addr}, database under {}", folder.display());
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let keys = crm_auth::JwtKeys::hs256(&secretstring(&secret))?;
    let caller = |sub: &str, role: Role, branch: &str| -> anyhow::Result<Caller> {
        let token = keys.mint(
            &StaffId::parse(sub).map_err(|e| anyhow::anyhow!("{e}"))?,
            role,
            &BranchId::parse(branch).map_err(|e| anyhow::anyhow!("{e}"))?,
            chrono::Duration::minutes(30),
        )?;
        Ok(Caller {
            channel: channel.clone(),
            token,
        })
    };
    let system = caller("SYS-CORE", Role::System, "B-001")?;
    let mut directory = DirectoryServiceClient::new(system.channel.clone());
    let mut clients = ClientServiceClient::new(system.channel.clone());

    println!("\n== 1. Seeding the directory: 2 branches, RMs, tellers, managers");
    for (branch, name) in [
        ("B-001", "Shanghai Lujiazui"),
        ("B-002", "Shanghai Xujiahui"),
    ] {
        directory
            .upsert_branch(system.request(pb::UpsertBranchRequest {
                branch: Some(pb::Branch {
                    branch_id: branch.into(),
                    name: name.into(),
                    city: "Shanghai".into(),
                    time_zone: String::new(),
                }),
            }))
            .await?;
        let staff: [(&str, &str, pb::StaffRole, i32); 5] = [
            ("M", "Manager", pb::StaffRole::BranchManager, 50),
            ("RM-1", "RM Wang", pb::StaffRole::Rm, 12),
            ("RM-2", "RM Li", pb::StaffRole::Rm, 12),
            ("RM-3", "RM Zhao", pb::StaffRole::Rm, 12),
            ("T-1", "Teller Chen", pb::StaffRole::Teller, 0),
        ];
        for (suffix, person, role, capacity) in staff {
            directory
                .upsert_staff(system.request(pb::UpsertStaffRequest {
                    staff: Some(pb::Staff {
                        staff_id: format!("{branch}-{suffix}"),
                        name: format!("{person} ({branch})"),
                        role: role as i32,
                        branch_id: branch.into(),
                        active: true,
                        capacity,
                        out_of_office_until: None,
                    }),
                }))
                .await?;
        }
        directory
            .pair_teller(system.request(pb::PairTellerRequest {
                teller_id: format!("{branch}-T-1"),
                rm_id: format!("{branch}-RM-2"),
                valid_from: None,
                valid_until: None,
            }))
            .await?;
        println!("   {branch} {name}: manager, RM-1..3, teller T-1 paired with RM-2");
    }

    println!("\n== 2. Seeding {client_count} clients from core banking, with coverage");
    for n in 0..client_count {
        let branch = if n % 2 == 0 { "B-001" } else { "B-002" };
        let client_id = format!("C-{n:06}");
        clients
            .upsert_client(system.request(pb::UpsertClientRequest {
                client: Some(pb::Client {
                    client_id: client_id.clone(),
                    full_name: format!("Client {n}"),
                    national_id: format!("1101011980{n:08}"),
                    phone: format!("138{n:08}"),
                    home_branch_id: branch.into(),
                    kind: pb::ClientKind::Individual as i32,
                    aum_daily_avg: Some(pb::Money {
                        minor_units: demo_average(n, client_count),
                        currency: "CNY".into(),
                    }),
                    ..Default::default()
                }),
            }))
            .await?;
        if n % 3 == 0 {
            clients
                .assign_coverage(system.request(pb::AssignCoverageRequest {
                    client_id,
                    primary_rm_id: format!("{branch}-RM-1"),
                    reason: "book of business".into(),
                    ..Default::default()
                }))
                .await?;
        }
    }
    println!("   every third client covered by its branch's RM-1");
    // Routing reads projections fed by events: give the bus a moment to deliver.
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!("\n== 3. RM Wang (B-001-RM-1) opens the mobile app: WatchWorkItems");
    let rm = caller("B-001-RM-1", Role::Rm, "B-001")?;
    let mut rm_client = ReferralServiceClient::new(rm.channel.clone());
    let mut stream = rm_client
        .watch_work_items(rm.request(pb::WatchWorkItemsRequest::default()))
        .await?
        .into_inner();

    println!("\n== 4. Teller Chen (B-001-T-1) refers client C-000000 (covered by RM-1)");
    let teller = caller("B-001-T-1", Role::Teller, "B-001")?;
    let mut teller_client = ReferralServiceClient::new(teller.channel.clone());
    let started = Instant::now();
    let created = teller_client
        .create_referral(teller.request(pb::CreateReferralRequest {
            idempotency_key: "demo-1".into(),
            client_id: "C-000000".into(),
            need: pb::Need::WealthManagement as i32,
            priority: pb::Priority::High as i32,
            note: "Client asked about a 3-year deposit for 2m CNY maturing next week".into(),
            amount_hint: Some(pb::Money {
                minor_units: 200_000_000,
                currency: "CNY".into(),
            }),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .referral
        .unwrap_or_default();
    println!(
        "   referral {} → {} ({})",
        created.referral_id, created.assigned_rm_id, created.routing_reason
    );
    if let Some(decision) = &created.routing_decision {
        println!("   routing decision {}:", decision.rule_version);
        for candidate in &decision.candidates {
            println!(
                "     - {} at {}: {} ({})",
                candidate.staff_id,
                candidate.step,
                if candidate.taken {
                    "taken"
                } else {
                    "passed over"
                },
                candidate.reason
            );
        }
    }
    let item = tokio::time::timeout(Duration::from_secs(5), stream.message()).await??;
    if let Some(item) = item.and_then(|r| r.work_item) {
        println!(
            "   RM Wang's phone shows \"{}\" after {} ms",
            item.title,
            started.elapsed().as_millis()
        );
        rm_client
            .ack_work_item(rm.request(pb::AckWorkItemRequest {
                work_item_id: item.work_item_id,
            }))
            .await?;
        println!("   the phone acknowledged it");
    }
    let accepted = rm_client
        .accept_referral(rm.request(pb::AcceptReferralRequest {
            referral_id: created.referral_id.clone(),
        }))
        .await?
        .into_inner()
        .referral
        .unwrap_or_default();
    println!(
        "   RM Wang accepted: status {:?}",
        pb::ReferralStatus::try_from(accepted.status).unwrap_or_default()
    );

    println!("\n== 5. The same teller refers a walk-in prospect (no client id)");
    let walk_in = teller_client
        .create_referral(teller.request(pb::CreateReferralRequest {
            idempotency_key: "demo-2".into(),
            prospect: Some(pb::Prospect {
                full_name: "Ms. Sun".into(),
                phone: "13900001111".into(),
            }),
            need: pb::Need::Loan as i32,
            priority: pb::Priority::Normal as i32,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .referral
        .unwrap_or_default();
    println!(
        "   referral → {} ({}); the teller sees the phone as {}",
        walk_in.assigned_rm_id,
        walk_in.routing_reason,
        walk_in.prospect.map(|p| p.phone).unwrap_or_default()
    );

    println!("\n== 6. The teller retries the first call (same idempotency key)");
    let again = teller_client
        .create_referral(teller.request(pb::CreateReferralRequest {
            idempotency_key: "demo-1".into(),
            client_id: "C-000000".into(),
            need: pb::Need::WealthManagement as i32,
            priority: pb::Priority::High as i32,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .referral
        .unwrap_or_default();
    println!(
        "   same referral back: {}",
        again.referral_id == created.referral_id
    );

    println!("\n== 7. A bad request is refused field by field");
    let refused = teller_client
        .create_referral(teller.request(pb::CreateReferralRequest {
            client_id: "lower-case".into(),
            ..Default::default()
        }))
        .await;
    if let Err(status) = refused {
        println!("   {:?}: {}", status.code(), status.message());
    }

    println!(
        "\n== 8. Hold-and-notify: at a Xujiahui counter (B-002), client C-000000 wants to move"
    );
    println!(
        "      800,000 CNY to another bank; the counter tells the client's RM first and waits"
    );
    let far_teller = caller("B-002-T-1", Role::Teller, "B-002")?;
    let held = {
        let mut events = EventServiceClient::new(far_teller.channel.clone());
        let request = far_teller.request(pb::NotifyLargeOutflowRequest {
            idempotency_key: "demo-hold-1".into(),
            client_id: "C-000000".into(),
            amount: Some(pb::Money {
                minor_units: 80_000_000,
                currency: "CNY".into(),
            }),
            counterparty_bank: "Another Bank".into(),
            wait_seconds: 30,
            ..Default::default()
        });
        tokio::spawn(async move { events.notify_large_outflow(request).await })
    };
    let started = Instant::now();
    let alert = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await??;
        match next.and_then(|r| r.work_item) {
            Some(item) if item.kind == pb::WorkItemKind::Alert as i32 => break Some(item),
            Some(_) => continue,
            None => break None,
        }
    };
    if let Some(alert) = alert {
        println!(
            "   RM Wang's phone buzzes after {} ms: \"{}\" ({:?})",
            started.elapsed().as_millis(),
            alert.title,
            pb::Priority::try_from(alert.priority).unwrap_or_default()
        );
        rm_client
            .complete_work_item(rm.request(pb::CompleteWorkItemRequest {
                work_item_id: alert.work_item_id,
                outcome: "funds kept".into(),
                note: "spoke to the client: 500k stays in a 1-year deposit".into(),
                funds_outcome: pb::FundsOutcome::PartlyKept as i32,
                funds_kept: Some(pb::Money {
                    minor_units: 50_000_000,
                    currency: "CNY".into(),
                }),
                ..Default::default()
            }))
            .await?;
        println!("   RM Wang calls the client and completes the alert with a note");
    }
    let answer = held.await??.into_inner();
    println!(
        "   the counter's call returns after {} ms: acknowledged by {} — \"{}\"",
        started.elapsed().as_millis(),
        answer.rm_id,
        answer.rm_note
    );

    println!("\n== 9. RM Wang opens C-000000's timeline: newest first, every service's part");
    let page = EventServiceClient::new(rm.channel.clone())
        .get_client_timeline(rm.request(pb::GetClientTimelineRequest {
            client_id: "C-000000".into(),
            page_size: 6,
            page_token: String::new(),
        }))
        .await?
        .into_inner();
    for entry in page.entries {
        println!("   [{}] {}", entry.entry_kind, entry.title);
    }

    println!("\n== 10. The campaign scheduler: `crm jobs quarterly-hnw`");
    let run_quarterly = || async {
        crm::run_job(
            db.clone(),
            "quarterly-hnw",
            &[],
            crm_runtime::ModuleSettings::defaults(crm::MODULES)?,
            crm_domain::sla::BusinessCalendar::default(),
            None,
        )
        .await
        .map_err(anyhow::Error::from)
    };
    println!("   {}", run_quarterly().await?);
    let mut tasks = Vec::new();
    while let Ok(Ok(Some(next))) =
        tokio::time::timeout(Duration::from_secs(3), stream.message()).await
    {
        if let Some(item) = next.work_item
            && item.kind == pb::WorkItemKind::CampaignTask as i32
        {
            tasks.push(item);
        }
    }
    for task in tasks.iter().take(3) {
        println!(
            "   RM Wang's phone: \"{}\" for {}",
            task.title, task.client_id
        );
    }
    println!("   … {} campaign tasks on RM Wang's phone", tasks.len());
    println!("   run again: {}", run_quarterly().await?);
    if let Some(task) = tasks.first() {
        rm_client
            .complete_work_item(rm.request(pb::CompleteWorkItemRequest {
                work_item_id: task.work_item_id.clone(),
                note: "moved 3m CNY into a 3-year deposit".into(),
                task_outcome: pb::ReferralOutcome::Converted as i32,
                converted_product: "3-year time deposit".into(),
                converted_amount: Some(pb::Money {
                    minor_units: 300_000_000,
                    currency: "CNY".into(),
                }),
                ..Default::default()
            }))
            .await?;
        println!(
            "   RM Wang converts {}: a 3-year time deposit of 3,000,000 CNY",
            task.client_id
        );
    }
    // The campaign hears of the conversion through the queue's news.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let manager = caller("B-001-M", Role::BranchManager, "B-001")?;
    let quarter = crm_domain::campaign::Quarter::at(chrono::Utc::now(), chrono_tz::Asia::Shanghai);
    let league = ReportServiceClient::new(manager.channel.clone())
        .get_league_table(manager.request(pb::GetLeagueTableRequest {
            period: Some(pb::LeaguePeriod {
                year: quarter.year,
                quarter: i32::try_from(quarter.quarter).unwrap_or_default(),
            }),
            branch_id: String::new(),
        }))
        .await?
        .into_inner();
    println!(
        "   league table {} Q{} (as B-001's manager sees it):",
        quarter.year, quarter.quarter
    );
    let print_rows = |title: &str, rows: &[pb::LeagueRow]| {
        println!(
            "     {title:<12} rank  referrals made/accepted/converted  campaign tasks done/overdue"
        );
        for row in rows {
            println!(
                "     {:<12} {:>4}  {:>14} / {:>4} / {:>4}  {:>15} / {}",
                row.key,
                row.rank,
                row.referrals_made,
                row.referrals_accepted,
                row.referrals_converted,
                row.campaign_tasks_done,
                row.campaign_tasks_overdue
            );
        }
    };
    print_rows("branch", &league.branches);
    print_rows("RM of B-001", &league.rms);

    println!("\n== Done. Shutting down gracefully.");
    shutdown.cancel();
    server.await??;
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}

/// A client's 30-day average in fen: spread up to 3M CNY, and every seventh
/// client high-net-worth (6M–12M), so the quarterly campaign has an audience.
fn demo_average(n: u32, client_count: u32) -> i64 {
    if n.is_multiple_of(7) {
        600_000_000 + i64::from(n % 6) * 100_000_000
    } else {
        i64::from(n) * 300_000_000 / i64::from(client_count.max(1))
    }
}

fn secretstring(value: &str) -> secrecy::SecretString {
    secrecy::SecretString::from(value.to_owned())
}
