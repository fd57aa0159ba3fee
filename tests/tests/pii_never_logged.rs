//! No national id or phone number reaches a log line or a span, at any level, from
//! any crate (ours, tonic, h2, sqlx, sea-orm, lapin): every event and every span's
//! fields at TRACE are captured while the client book and a walk-in referral are
//! used the way tellers and RMs use them, wrong inputs included.
//!
//! This binary installs its own global subscriber, so it is a test binary of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

const NATIONAL_ID: &str = "110101198001011234";
const PHONE: &str = "13812345678";
const PROSPECT_PHONE: &str = "13987654321";
const BAD_NATIONAL_ID: &str = "11010119800101-BAD";

/// Everything logged by this process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture_everything() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
                .with_writer(captured.clone())
                .with_ansi(false)
                .init();
            captured
        })
        .clone()
}

async fn use_the_client_book(app: &TestApp) {
    app.seed_branch("B-001", 2).await;
    let system = app.token("SYS-CORE", Role::System, "HQ-001");
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let admin = app.token("CA-1", Role::CampaignAdmin, "HQ-001");
    let mut clients = app.clients();
    let client = pb::Client {
        client_id: "C-PII".into(),
        full_name: "Zhou Private".into(),
        national_id: NATIONAL_ID.into(),
        phone: PHONE.into(),
        home_branch_id: "B-001".into(),
        kind: pb::ClientKind::Individual as i32,
        ..Default::default()
    };
    clients
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(client.clone()),
            },
        ))
        .await
        .unwrap();
    app.seed_client("C-PII", "B-001", Some("B-001-RM-1")).await;
    clients
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(client.clone()),
            },
        ))
        .await
        .unwrap();
    for token in [&rm, &teller, &admin] {
        let request = pb::GetClientRequest {
            client_id: "C-PII".into(),
        };
        clients
            .get_client(with_token(token, request))
            .await
            .unwrap();
    }
    for (token, phone) in [
        (&teller, PHONE),
        (&admin, PHONE),
        (&rm, PHONE),
        (&teller, "138-1234-5678"),
    ] {
        let request = pb::SearchClientsRequest {
            phone: phone.into(),
            ..Default::default()
        };
        let _ = clients.search_clients(with_token(token, request)).await;
    }
    // Wrong inputs carrying personal data: refused without echoing it.
    let bad = pb::Client {
        national_id: BAD_NATIONAL_ID.into(),
        phone: format!("{PHONE}x"),
        ..client.clone()
    };
    let error = clients
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest { client: Some(bad) },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(!format!("{error:?}").contains(PHONE));
    // A teller may not write; an RM of another branch may not read.
    let _ = clients
        .upsert_client(with_token(
            &teller,
            pb::UpsertClientRequest {
                client: Some(client),
            },
        ))
        .await;
    let stranger = app.token("B-009-RM-1", Role::Rm, "B-009");
    let _ = clients
        .get_client(with_token(
            &stranger,
            pb::GetClientRequest {
                client_id: "C-PII".into(),
            },
        ))
        .await;
    clients
        .log_interaction(with_token(
            &rm,
            pb::LogInteractionRequest {
                client_id: "C-PII".into(),
                channel: pb::InteractionChannel::Phone as i32,
                summary: "called about deposits".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // A walk-in prospect's phone, through the referral path and the bus.
    app.referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                prospect: Some(pb::Prospect {
                    full_name: "Walk In".into(),
                    phone: PROSPECT_PHONE.into(),
                }),
                need: pb::Need::WealthManagement as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // Let relays and consumers carry every message before looking.
    app.wait_for_count(
        "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL",
        0,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn assert_nothing_personal(captured: &Captured) {
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // Controls: the capture holds our RPC spans' fields and the HTTP/2 layer's
    // frames, so an absence below means something.
    for control in ["client_id=\"C-PII\"", " h2::"] {
        assert!(text.contains(control), "the capture lacks {control}");
    }
    // The middle of a national id (birth date and sequence) is what masking hides.
    for needle in [
        NATIONAL_ID,
        "0119800101",
        BAD_NATIONAL_ID,
        PHONE,
        "38123456",
        PROSPECT_PHONE,
        "98765432",
    ] {
        if let Some(at) = text.find(needle) {
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            panic!("{needle} was logged:\n{}", &text[line_start..line_end]);
        }
    }
}

async fn no_personal_data_in_logs(backend: Backend) {
    let captured = capture_everything();
    let app = spawn_app(backend).await;
    use_the_client_book(&app).await;
    app.stop().await;
    assert_nothing_personal(&captured);
}

on_both_backends!(no_personal_data_in_logs);
