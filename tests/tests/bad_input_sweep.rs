//! Malformed requests across the RPCs — NUL bytes, control characters and
//! 100,000-character values in every string field, times outside any calendar a
//! database keeps, floods in repeated fields, and to every method of every service
//! bytes that are no protobuf at all or a message over the 4 MiB limit — are
//! answered INVALID_ARGUMENT (or RESOURCE_EXHAUSTED), never INTERNAL or a panic, and
//! the server stays healthy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::future::Future;
use std::pin::Pin;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use prost::Message;
use prost::bytes::BufMut;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send + 'a>>;

/// `call!(app, clients.get_client, token, request)`: one case, the RPC called with
/// `token` and `request`, its answer kept only as a status.
macro_rules! call {
    ($app:expr, $client:ident . $method:ident, $token:expr, $request:expr) => {{
        let (app, token, request) = ($app, $token.clone(), $request);
        Box::pin(async move {
            app.$client()
                .$method(with_token(&token, request))
                .await
                .map(drop)
        }) as Call<'_>
    }};
}

/// Sends bytes as they are, as a broken or hostile client would; whatever comes
/// back is not read (these calls are meant to fail).
#[derive(Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, _: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        Ok(Some(()))
    }
}

/// `/<service>/<method>` of every RPC of crm.v1, from the API's own descriptors.
fn every_method_path() -> Vec<String> {
    let files = prost_types::FileDescriptorSet::decode(crm_proto::FILE_DESCRIPTOR_SET).unwrap();
    files
        .file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("/{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .collect()
}

/// Values no text field may hold.
fn bad_texts() -> Vec<(&'static str, String)> {
    vec![
        ("nul", "a\0b".to_owned()),
        ("control", "\u{7}\u{1b}[31mred".to_owned()),
        ("huge", "x".repeat(100_000)),
    ]
}

/// Times outside 1900–9999, and nanos out of range.
fn bad_times() -> Vec<(&'static str, prost_types::Timestamp)> {
    let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
    vec![
        ("max", at(i64::MAX, 0)),
        ("min", at(i64::MIN, 0)),
        ("year 10000", at(253_402_300_800, 0)),
        ("year 1800", at(-5_364_662_400, 0)),
        ("negative nanos", at(0, -1)),
        ("nanos overflow", at(0, 1_000_000_000)),
    ]
}

struct Sweep<'a> {
    app: &'a TestApp,
    system: String,
    rm: String,
    teller: String,
    manager: String,
    cases: Vec<(String, Call<'a>)>,
}

impl<'a> Sweep<'a> {
    fn case(&mut self, name: impl Into<String>, call: Call<'a>) {
        self.cases.push((name.into(), call));
    }

    fn client(&self, field: &str, value: &str) -> pb::Client {
        let mut client = pb::Client {
            client_id: "C-SWEEP".into(),
            full_name: "Sweep Client".into(),
            national_id: "110101198001011234".into(),
            phone: "13812345678".into(),
            home_branch_id: "B-001".into(),
            kind: pb::ClientKind::Individual as i32,
            ..Default::default()
        };
        match field {
            "full_name" => client.full_name = value.into(),
            "national_id" => client.national_id = value.into(),
            "phone" => client.phone = value.into(),
            "client_id" => client.client_id = value.into(),
            "home_branch_id" => client.home_branch_id = value.into(),
            "segments" => client.segments = vec![value.into()],
            _ => unreachable!("{field}"),
        }
        client
    }

    fn texts(&mut self) {
        let app = self.app;
        for (what, bad) in bad_texts() {
            for field in [
                "full_name",
                "national_id",
                "phone",
                "client_id",
                "home_branch_id",
                "segments",
            ] {
                let client = self.client(field, &bad);
                let token = self.system.clone();
                self.case(
                    format!("UpsertClient {field} {what}"),
                    call!(
                        app,
                        clients.upsert_client,
                        token,
                        pb::UpsertClientRequest {
                            client: Some(client),
                        }
                    ),
                );
            }
            for field in [
                "name_prefix",
                "phone",
                "segment",
                "rm_id",
                "branch_id",
                "client_id",
            ] {
                let mut request = pb::SearchClientsRequest::default();
                match field {
                    "name_prefix" => request.name_prefix = bad.clone(),
                    "phone" => request.phone = bad.clone(),
                    "segment" => request.segment = bad.clone(),
                    "rm_id" => request.rm_id = bad.clone(),
                    "branch_id" => request.branch_id = bad.clone(),
                    _ => request.client_id = bad.clone(),
                }
                let token = self.system.clone();
                self.case(
                    format!("SearchClients {field} {what}"),
                    call!(app, clients.search_clients, token, request),
                );
            }
            for field in ["summary", "outcome", "client_id"] {
                let mut request = pb::LogInteractionRequest {
                    client_id: "C-000001".into(),
                    channel: pb::InteractionChannel::Phone as i32,
                    summary: "called".into(),
                    outcome: "interested".into(),
                    occurred_at: None,
                };
                match field {
                    "summary" => request.summary = bad.clone(),
                    "outcome" => request.outcome = bad.clone(),
                    _ => request.client_id = bad.clone(),
                }
                let token = self.rm.clone();
                self.case(
                    format!("LogInteraction {field} {what}"),
                    call!(app, clients.log_interaction, token, request),
                );
            }
            for field in ["reason", "primary_rm_id"] {
                let mut request = pb::AssignCoverageRequest {
                    client_id: "C-000001".into(),
                    primary_rm_id: "B-001-RM-1".into(),
                    reason: "review".into(),
                    ..Default::default()
                };
                match field {
                    "reason" => request.reason = bad.clone(),
                    _ => request.primary_rm_id = bad.clone(),
                }
                let token = self.system.clone();
                self.case(
                    format!("AssignCoverage {field} {what}"),
                    call!(app, clients.assign_coverage, token, request),
                );
            }
            for field in [
                "idempotency_key",
                "client_id",
                "note",
                "prospect.full_name",
                "prospect.phone",
            ] {
                let mut request = pb::CreateReferralRequest {
                    idempotency_key: format!("sweep-{field}-{what}"),
                    client_id: "C-000001".into(),
                    need: pb::Need::Loan as i32,
                    priority: pb::Priority::Normal as i32,
                    note: "note".into(),
                    ..Default::default()
                };
                match field {
                    "idempotency_key" => request.idempotency_key = bad.clone(),
                    "client_id" => request.client_id = bad.clone(),
                    "note" => request.note = bad.clone(),
                    "prospect.full_name" | "prospect.phone" => {
                        request.client_id = String::new();
                        request.prospect = Some(pb::Prospect {
                            full_name: if field == "prospect.full_name" {
                                bad.clone()
                            } else {
                                "Walk In".into()
                            },
                            phone: if field == "prospect.phone" {
                                bad.clone()
                            } else {
                                "13900001111".into()
                            },
                        });
                    }
                    _ => unreachable!(),
                }
                let token = self.teller.clone();
                self.case(
                    format!("CreateReferral {field} {what}"),
                    call!(app, referrals.create_referral, token, request),
                );
            }
            for (field, request) in [
                (
                    "outcome note",
                    pb::RecordReferralOutcomeRequest {
                        referral_id: uuid::Uuid::now_v7().to_string(),
                        outcome: pb::ReferralOutcome::Contacted as i32,
                        note: bad.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "outcome product",
                    pb::RecordReferralOutcomeRequest {
                        referral_id: uuid::Uuid::now_v7().to_string(),
                        outcome: pb::ReferralOutcome::Converted as i32,
                        note: "ok".into(),
                        product: bad.clone(),
                        ..Default::default()
                    },
                ),
            ] {
                let token = self.rm.clone();
                self.case(
                    format!("RecordReferralOutcome {field} {what}"),
                    call!(app, referrals.record_referral_outcome, token, request),
                );
            }
            let request = pb::ReassignReferralRequest {
                referral_id: uuid::Uuid::now_v7().to_string(),
                rm_id: "B-001-RM-2".into(),
                reason: bad.clone(),
            };
            let token = self.manager.clone();
            self.case(
                format!("ReassignReferral reason {what}"),
                call!(app, referrals.reassign_referral, token, request),
            );
            for field in ["outcome", "note"] {
                let mut request = pb::CompleteWorkItemRequest {
                    work_item_id: uuid::Uuid::now_v7().to_string(),
                    outcome: "done".into(),
                    note: "ok".into(),
                    ..Default::default()
                };
                match field {
                    "outcome" => request.outcome = bad.clone(),
                    _ => request.note = bad.clone(),
                }
                let token = self.rm.clone();
                self.case(
                    format!("CompleteWorkItem {field} {what}"),
                    call!(app, referrals.complete_work_item, token, request),
                );
            }
            for field in ["name", "city", "time_zone", "branch_id"] {
                let mut branch = pb::Branch {
                    branch_id: "B-009".into(),
                    name: "Sweep".into(),
                    city: "Shanghai".into(),
                    time_zone: String::new(),
                };
                match field {
                    "name" => branch.name = bad.clone(),
                    "city" => branch.city = bad.clone(),
                    "time_zone" => branch.time_zone = bad.clone(),
                    _ => branch.branch_id = bad.clone(),
                }
                let token = self.system.clone();
                self.case(
                    format!("UpsertBranch {field} {what}"),
                    call!(
                        app,
                        directory.upsert_branch,
                        token,
                        pb::UpsertBranchRequest {
                            branch: Some(branch),
                        }
                    ),
                );
            }
            let staff = pb::Staff {
                staff_id: "B-001-RM-9".into(),
                name: bad.clone(),
                role: pb::StaffRole::Rm as i32,
                branch_id: "B-001".into(),
                active: true,
                capacity: 5,
                out_of_office_until: None,
            };
            let token = self.system.clone();
            self.case(
                format!("UpsertStaff name {what}"),
                call!(
                    app,
                    directory.upsert_staff,
                    token,
                    pb::UpsertStaffRequest { staff: Some(staff) }
                ),
            );
            for (rpc, page_token) in [
                ("ListReferrals", bad.clone()),
                ("ListWorkItems", bad.clone()),
            ] {
                let token = self.manager.clone();
                self.case(
                    format!("{rpc} page_token {what}"),
                    Box::pin(async move {
                        if rpc == "ListReferrals" {
                            app.referrals()
                                .list_referrals(with_token(
                                    &token,
                                    pb::ListReferralsRequest {
                                        page_token,
                                        ..Default::default()
                                    },
                                ))
                                .await
                                .map(drop)
                        } else {
                            app.referrals()
                                .list_work_items(with_token(
                                    &token,
                                    pb::ListWorkItemsRequest {
                                        page_token,
                                        ..Default::default()
                                    },
                                ))
                                .await
                                .map(drop)
                        }
                    }),
                );
            }
        }
    }

    /// The RM's answer about an alert's funds, each way it can be wrong.
    fn funds(&mut self) {
        let app = self.app;
        let cny = |minor_units| {
            Some(pb::Money {
                minor_units,
                currency: "CNY".into(),
            })
        };
        for (what_funds, funds_outcome, funds_kept) in [
            ("an unknown outcome", 99, None),
            (
                "a negative amount kept",
                pb::FundsOutcome::Kept as i32,
                cny(-1),
            ),
            (
                "partly kept without an amount",
                pb::FundsOutcome::PartlyKept as i32,
                None,
            ),
            (
                "partly kept, zero",
                pb::FundsOutcome::PartlyKept as i32,
                cny(0),
            ),
            (
                "gone with an amount kept",
                pb::FundsOutcome::Gone as i32,
                cny(100),
            ),
            ("an amount without an outcome", 0, cny(100)),
        ] {
            let request = pb::CompleteWorkItemRequest {
                work_item_id: uuid::Uuid::now_v7().to_string(),
                funds_outcome,
                funds_kept,
                ..Default::default()
            };
            let token = self.rm.clone();
            self.case(
                format!("CompleteWorkItem funds: {what_funds}"),
                call!(app, referrals.complete_work_item, token, request),
            );
        }
    }

    fn times(&mut self) {
        let app = self.app;
        for (what, bad) in bad_times() {
            let token = self.rm.clone();
            let at = bad;
            self.case(
                format!("LogInteraction occurred_at {what}"),
                call!(
                    app,
                    clients.log_interaction,
                    token,
                    pb::LogInteractionRequest {
                        client_id: "C-000001".into(),
                        channel: pb::InteractionChannel::Phone as i32,
                        summary: "called".into(),
                        outcome: "ok".into(),
                        occurred_at: Some(at),
                    }
                ),
            );
            let token = self.rm.clone();
            let at = bad;
            self.case(
                format!("SnoozeWorkItem until {what}"),
                call!(
                    app,
                    referrals.snooze_work_item,
                    token,
                    pb::SnoozeWorkItemRequest {
                        work_item_id: uuid::Uuid::now_v7().to_string(),
                        until: Some(at),
                    }
                ),
            );
            let token = self.rm.clone();
            let at = bad;
            self.case(
                format!("WatchWorkItems resume_from {what}"),
                call!(
                    app,
                    referrals.watch_work_items,
                    token,
                    pb::WatchWorkItemsRequest {
                        resume_from: Some(at),
                        mark_caught_up: true,
                    }
                ),
            );
            for field in ["from_time", "to_time"] {
                let token = self.system.clone();
                let mut request = pb::GetReferralStatsRequest::default();
                match field {
                    "from_time" => request.from_time = Some(bad),
                    _ => request.to_time = Some(bad),
                }
                self.case(
                    format!("GetReferralStats {field} {what}"),
                    call!(app, referrals.get_referral_stats, token, request),
                );
                let token = self.system.clone();
                let mut request = pb::ListAuditEventsRequest {
                    client_id: "C-000001".into(),
                    ..Default::default()
                };
                match field {
                    "from_time" => request.from_time = Some(bad),
                    _ => request.to_time = Some(bad),
                }
                self.case(
                    format!("ListAuditEvents {field} {what}"),
                    call!(app, clients.list_audit_events, token, request),
                );
            }
            let token = self.system.clone();
            let at = bad;
            self.case(
                format!("UpsertStaff out_of_office_until {what}"),
                call!(
                    app,
                    directory.upsert_staff,
                    token,
                    pb::UpsertStaffRequest {
                        staff: Some(pb::Staff {
                            staff_id: "B-001-RM-9".into(),
                            name: "Sweep".into(),
                            role: pb::StaffRole::Rm as i32,
                            branch_id: "B-001".into(),
                            active: true,
                            capacity: 5,
                            out_of_office_until: Some(at),
                        }),
                    }
                ),
            );
        }
        // A stats window of a lifetime: bounded work, refused.
        let token = self.system.clone();
        self.case(
            "GetReferralStats a 50-year window",
            call!(
                app,
                referrals.get_referral_stats,
                token,
                pb::GetReferralStatsRequest {
                    from_time: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: 0,
                    }),
                    ..Default::default()
                }
            ),
        );
    }

    /// Every id field of the RPCs, with values no id has.
    fn ids(&mut self) {
        let app = self.app;
        let bad_ids = [
            ("nul", "C-0\0".to_owned()),
            ("huge", "C".repeat(10_000)),
            ("lowercase", "not an id!".to_owned()),
        ];
        let some_id = || uuid::Uuid::now_v7().to_string();
        for (what, v) in bad_ids {
            let (system, rm, manager) = (&self.system, &self.rm, &self.manager);
            let cases: Vec<(&str, Call<'a>)> = vec![
                (
                    "GetClient client_id",
                    call!(
                        app,
                        clients.get_client,
                        system,
                        pb::GetClientRequest {
                            client_id: v.clone()
                        }
                    ),
                ),
                (
                    "ListInteractions client_id",
                    call!(
                        app,
                        clients.list_interactions,
                        rm,
                        pb::ListInteractionsRequest {
                            client_id: v.clone(),
                            ..Default::default()
                        }
                    ),
                ),
                (
                    "ListAuditEvents actor_id",
                    call!(
                        app,
                        clients.list_audit_events,
                        system,
                        pb::ListAuditEventsRequest {
                            actor_id: v.clone(),
                            ..Default::default()
                        }
                    ),
                ),
                (
                    "GetReferral referral_id",
                    call!(
                        app,
                        referrals.get_referral,
                        manager,
                        pb::GetReferralRequest {
                            referral_id: v.clone()
                        }
                    ),
                ),
                (
                    "AcceptReferral referral_id",
                    call!(
                        app,
                        referrals.accept_referral,
                        rm,
                        pb::AcceptReferralRequest {
                            referral_id: v.clone()
                        }
                    ),
                ),
                (
                    "ReassignReferral rm_id",
                    call!(
                        app,
                        referrals.reassign_referral,
                        manager,
                        pb::ReassignReferralRequest {
                            referral_id: some_id(),
                            rm_id: v.clone(),
                            reason: "moving".into(),
                        }
                    ),
                ),
                (
                    "ListReferrals referrer_id",
                    call!(
                        app,
                        referrals.list_referrals,
                        manager,
                        pb::ListReferralsRequest {
                            referrer_id: v.clone(),
                            ..Default::default()
                        }
                    ),
                ),
                (
                    "ListWorkItems rm_id",
                    call!(
                        app,
                        referrals.list_work_items,
                        manager,
                        pb::ListWorkItemsRequest {
                            rm_id: v.clone(),
                            ..Default::default()
                        }
                    ),
                ),
                (
                    "AckWorkItem work_item_id",
                    call!(
                        app,
                        referrals.ack_work_item,
                        rm,
                        pb::AckWorkItemRequest {
                            work_item_id: v.clone()
                        }
                    ),
                ),
                (
                    "GetReferralStats branch_id",
                    call!(
                        app,
                        referrals.get_referral_stats,
                        system,
                        pb::GetReferralStatsRequest {
                            branch_id: v.clone(),
                            ..Default::default()
                        }
                    ),
                ),
                (
                    "GetStaff staff_id",
                    call!(
                        app,
                        directory.get_staff,
                        system,
                        pb::GetStaffRequest {
                            staff_id: v.clone()
                        }
                    ),
                ),
                (
                    "GetBranch branch_id",
                    call!(
                        app,
                        directory.get_branch,
                        system,
                        pb::GetBranchRequest {
                            branch_id: v.clone()
                        }
                    ),
                ),
                (
                    "ListStaff branch_id",
                    call!(
                        app,
                        directory.list_staff,
                        system,
                        pb::ListStaffRequest {
                            branch_id: v.clone(),
                            ..Default::default()
                        }
                    ),
                ),
                (
                    "PairTeller teller_id",
                    call!(
                        app,
                        directory.pair_teller,
                        system,
                        pb::PairTellerRequest {
                            teller_id: v.clone(),
                            rm_id: "B-001-RM-1".into(),
                            valid_from: None,
                            valid_until: None,
                        }
                    ),
                ),
            ];
            for (name, call) in cases {
                self.case(format!("{name} {what}"), call);
            }
        }
    }

    fn floods(&mut self) {
        let app = self.app;
        for (field, states, kinds) in [
            (
                "states",
                vec![pb::WorkItemState::Open as i32; 100_000],
                vec![],
            ),
            (
                "kinds",
                vec![],
                vec![pb::WorkItemKind::Referral as i32; 100_000],
            ),
            ("states unknown", vec![42; 10], vec![]),
        ] {
            let token = self.rm.clone();
            self.case(
                format!("ListWorkItems {field} flood"),
                call!(
                    app,
                    referrals.list_work_items,
                    token,
                    pb::ListWorkItemsRequest {
                        states,
                        kinds,
                        ..Default::default()
                    }
                ),
            );
        }
        let mut client = self.client("segments", "coal");
        client.segments = (0..70_000).map(|n| format!("s{n}")).collect();
        let token = self.system.clone();
        self.case(
            "UpsertClient segments flood",
            call!(
                app,
                clients.upsert_client,
                token,
                pb::UpsertClientRequest {
                    client: Some(client),
                }
            ),
        );
    }

    /// To every method: bytes that are no protobuf, and a message past the limit.
    fn raw_bytes(&mut self) {
        let paths = every_method_path();
        assert!(paths.len() >= 30, "{paths:?}");
        // A field tag of 0 is never valid protobuf.
        let garbage = vec![0x00, 0xff, 0xfe, 0x07, 0x00, 0x13];
        let too_large = vec![0x0a; 5 * 1024 * 1024];
        for path in paths {
            for (what, body) in [
                ("garbage", garbage.clone()),
                ("over 4 MiB", too_large.clone()),
            ] {
                let (channel, token) = (self.app.channel.clone(), self.system.clone());
                let path_and_query =
                    tonic::codegen::http::uri::PathAndQuery::try_from(path.as_str()).unwrap();
                self.case(
                    format!("{path} {what}"),
                    Box::pin(async move {
                        let mut grpc = tonic::client::Grpc::new(channel);
                        grpc.ready()
                            .await
                            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        grpc.unary(with_token(&token, body), path_and_query, RawBytes)
                            .await
                            .map(drop)
                    }),
                );
            }
        }
    }
}

async fn malformed_requests_are_refused_field_by_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", Some("B-001-RM-1"))
        .await;
    let mut sweep = Sweep {
        app: &app,
        system: app.token("SYS-TEST", Role::System, "HQ-001"),
        rm: app.token("B-001-RM-1", Role::Rm, "B-001"),
        teller: app.token("B-001-T-1", Role::Teller, "B-001"),
        manager: app.token("B-001-M", Role::BranchManager, "B-001"),
        cases: Vec::new(),
    };
    sweep.texts();
    sweep.times();
    sweep.funds();
    sweep.ids();
    sweep.floods();
    sweep.raw_bytes();
    let cases = std::mem::take(&mut sweep.cases);
    assert!(cases.len() >= 250, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for (name, call) in cases {
        match call.await {
            Err(status)
                if matches!(
                    status.code(),
                    Code::InvalidArgument | Code::ResourceExhausted
                ) => {}
            other => wrong.push(format!(
                "{name}: {:?}",
                other.map_err(|s| (s.code(), s.message().chars().take(120).collect::<String>()))
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Healthy after: a good request is served.
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    app.clients()
        .get_client(with_token(
            &rm,
            pb::GetClientRequest {
                client_id: "C-000001".into(),
            },
        ))
        .await
        .unwrap();
    drop(sweep);
    app.stop().await;
}

on_both_backends!(malformed_requests_are_refused_field_by_field);
