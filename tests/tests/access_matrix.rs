//! The security model of the client book and the directory, as a table: every role
//! × every ClientService and DirectoryService RPC × own / other RM's / other
//! branch's / layered-coverage client (or own / other branch) → what the caller
//! gets. Read the table as the documentation; the runner below only checks it.
//!
//! The bank in this test: branches B-001 and B-002, each with manager `<B>-M`,
//! teller `<B>-T-1` and RMs `<B>-RM-1`, `<B>-RM-2`. Callers are B-001's teller,
//! RM-1 and manager, a campaign admin and core banking (system).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestApp, on_both_backends, spawn_app, with_token};
use tonic::Code;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Teller,
    Rm,
    Manager,
    CampaignAdmin,
    System,
}

/// Which client the call is about (ClientService rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// C-OWN: B-001, primary RM B-001-RM-1 (the calling RM).
    Own,
    /// C-OTHER-RM: B-001, primary RM B-001-RM-2.
    OtherRm,
    /// C-OTHER-BRANCH: B-002, primary RM B-002-RM-1.
    OtherBranch,
    /// C-LAYERED: B-002, primary RM B-002-RM-1, wealth manager B-001-RM-1.
    Layered,
}

/// Which branch the call is about (DirectoryService rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    Own,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientRpc {
    GetClient,
    /// By client id; out of scope is an empty page, not an error.
    SearchClients,
    /// The record unchanged: whether the caller may write it.
    UpsertClient,
    /// The coverage unchanged.
    AssignCoverage,
    LogInteraction,
    ListInteractions,
    /// The trail of the target client.
    ListAuditEvents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirectoryRpc {
    UpsertBranch,
    /// The branch's RM-1, unchanged.
    UpsertStaff,
    /// The branch's teller with RM-2 again.
    PairTeller,
    ListStaff,
    GetBranch,
    /// The branch's RM-1.
    GetStaff,
}

/// What the caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The record with national id and phone in clear.
    Full,
    /// The record with `1101**********1234` and `138****5678`.
    Masked,
    /// Name and tier, nothing else.
    NameAndTier,
    /// A search page without the client.
    Nothing,
    /// Success (writes, lists, directory calls).
    Allowed,
    /// PERMISSION_DENIED, and a `denied` line in the audit trail.
    Denied,
}

use Caller::*;
use ClientRpc::*;
use DirectoryRpc::*;
use Expect::*;
use Target::*;

#[rustfmt::skip]
const CLIENT_MATRIX: &[(Caller, ClientRpc, [Expect; 4])] = &[
    //                                 Own          OtherRm      OtherBranch  Layered
    (Teller,        GetClient,        [Masked,      Masked,      Denied,      Denied]),
    (Rm,            GetClient,        [Full,        Denied,      Denied,      Full]),
    (Manager,       GetClient,        [Full,        Full,        Denied,      Denied]),
    (CampaignAdmin, GetClient,        [NameAndTier, NameAndTier, NameAndTier, NameAndTier]),
    (System,        GetClient,        [Full,        Full,        Full,        Full]),

    (Teller,        SearchClients,    [Masked,      Masked,      Nothing,     Nothing]),
    (Rm,            SearchClients,    [Full,        Nothing,     Nothing,     Full]),
    (Manager,       SearchClients,    [Full,        Full,        Nothing,     Nothing]),
    (CampaignAdmin, SearchClients,    [NameAndTier, NameAndTier, NameAndTier, NameAndTier]),
    (System,        SearchClients,    [Full,        Full,        Full,        Full]),

    (Teller,        UpsertClient,     [Denied,      Denied,      Denied,      Denied]),
    (Rm,            UpsertClient,     [Full,        Denied,      Denied,      Full]),
    (Manager,       UpsertClient,     [Full,        Full,        Denied,      Denied]),
    (CampaignAdmin, UpsertClient,     [Denied,      Denied,      Denied,      Denied]),
    (System,        UpsertClient,     [Full,        Full,        Full,        Full]),

    (Teller,        AssignCoverage,   [Denied,      Denied,      Denied,      Denied]),
    (Rm,            AssignCoverage,   [Denied,      Denied,      Denied,      Denied]),
    (Manager,       AssignCoverage,   [Full,        Full,        Denied,      Denied]),
    (CampaignAdmin, AssignCoverage,   [Denied,      Denied,      Denied,      Denied]),
    (System,        AssignCoverage,   [Full,        Full,        Full,        Full]),

    (Teller,        LogInteraction,   [Denied,      Denied,      Denied,      Denied]),
    (Rm,            LogInteraction,   [Allowed,     Denied,      Denied,      Allowed]),
    (Manager,       LogInteraction,   [Allowed,     Allowed,     Denied,      Denied]),
    (CampaignAdmin, LogInteraction,   [Denied,      Denied,      Denied,      Denied]),
    (System,        LogInteraction,   [Allowed,     Allowed,     Allowed,     Allowed]),

    (Teller,        ListInteractions, [Denied,      Denied,      Denied,      Denied]),
    (Rm,            ListInteractions, [Allowed,     Denied,      Denied,      Allowed]),
    (Manager,       ListInteractions, [Allowed,     Allowed,     Denied,      Denied]),
    (CampaignAdmin, ListInteractions, [Denied,      Denied,      Denied,      Denied]),
    (System,        ListInteractions, [Allowed,     Allowed,     Allowed,     Allowed]),

    (Teller,        ListAuditEvents,  [Denied,      Denied,      Denied,      Denied]),
    (Rm,            ListAuditEvents,  [Denied,      Denied,      Denied,      Denied]),
    (Manager,       ListAuditEvents,  [Allowed,     Allowed,     Denied,      Denied]),
    (CampaignAdmin, ListAuditEvents,  [Denied,      Denied,      Denied,      Denied]),
    (System,        ListAuditEvents,  [Allowed,     Allowed,     Allowed,     Allowed]),
];

#[rustfmt::skip]
const DIRECTORY_MATRIX: &[(Caller, DirectoryRpc, [Expect; 2])] = &[
    //                                 Own          Other
    (Teller,        UpsertBranch,     [Denied,      Denied]),
    (Rm,            UpsertBranch,     [Denied,      Denied]),
    (Manager,       UpsertBranch,     [Denied,      Denied]),
    (CampaignAdmin, UpsertBranch,     [Denied,      Denied]),
    (System,        UpsertBranch,     [Allowed,     Allowed]),

    (Teller,        UpsertStaff,      [Denied,      Denied]),
    (Rm,            UpsertStaff,      [Denied,      Denied]),
    (Manager,       UpsertStaff,      [Allowed,     Denied]),
    (CampaignAdmin, UpsertStaff,      [Denied,      Denied]),
    (System,        UpsertStaff,      [Allowed,     Allowed]),

    (Teller,        PairTeller,       [Denied,      Denied]),
    (Rm,            PairTeller,       [Denied,      Denied]),
    (Manager,       PairTeller,       [Allowed,     Denied]),
    (CampaignAdmin, PairTeller,       [Denied,      Denied]),
    (System,        PairTeller,       [Allowed,     Allowed]),

    (Teller,        ListStaff,        [Allowed,     Denied]),
    (Rm,            ListStaff,        [Allowed,     Denied]),
    (Manager,       ListStaff,        [Allowed,     Denied]),
    (CampaignAdmin, ListStaff,        [Allowed,     Allowed]),
    (System,        ListStaff,        [Allowed,     Allowed]),

    (Teller,        GetBranch,        [Allowed,     Allowed]),
    (Rm,            GetBranch,        [Allowed,     Allowed]),
    (Manager,       GetBranch,        [Allowed,     Allowed]),
    (CampaignAdmin, GetBranch,        [Allowed,     Allowed]),
    (System,        GetBranch,        [Allowed,     Allowed]),

    (Teller,        GetStaff,         [Allowed,     Denied]),
    (Rm,            GetStaff,         [Allowed,     Denied]),
    (Manager,       GetStaff,         [Allowed,     Denied]),
    (CampaignAdmin, GetStaff,         [Allowed,     Allowed]),
    (System,        GetStaff,         [Allowed,     Allowed]),
];

const NATIONAL_ID: &str = "110101198001011234";
const PHONE: &str = "13812345678";

fn token(app: &TestApp, caller: Caller) -> String {
    match caller {
        Teller => app.token("B-001-T-1", Role::Teller, "B-001"),
        Rm => app.token("B-001-RM-1", Role::Rm, "B-001"),
        Manager => app.token("B-001-M", Role::BranchManager, "B-001"),
        CampaignAdmin => app.token("CA-1", Role::CampaignAdmin, "HQ-001"),
        System => app.token("SYS-CORE", Role::System, "HQ-001"),
    }
}

fn client_id(target: Target) -> &'static str {
    match target {
        Own => "C-OWN",
        OtherRm => "C-OTHER-RM",
        OtherBranch => "C-OTHER-BRANCH",
        Layered => "C-LAYERED",
    }
}

fn branch_id(branch: Branch) -> &'static str {
    match branch {
        Branch::Own => "B-001",
        Branch::Other => "B-002",
    }
}

/// `(home branch, primary RM, wealth manager)` of each client.
fn coverage(target: Target) -> (&'static str, &'static str, &'static str) {
    match target {
        Own => ("B-001", "B-001-RM-1", ""),
        OtherRm => ("B-001", "B-001-RM-2", ""),
        OtherBranch => ("B-002", "B-002-RM-1", ""),
        Layered => ("B-002", "B-002-RM-1", "B-001-RM-1"),
    }
}

fn client_record(target: Target) -> pb::Client {
    let (branch, _, _) = coverage(target);
    pb::Client {
        client_id: client_id(target).into(),
        full_name: format!("Client {}", client_id(target)),
        national_id: NATIONAL_ID.into(),
        phone: PHONE.into(),
        home_branch_id: branch.into(),
        kind: pb::ClientKind::Individual as i32,
        segments: vec!["payroll".into()],
        ..Default::default()
    }
}

async fn seed_bank(app: &TestApp) {
    app.seed_branch("B-001", 2).await;
    app.seed_branch("B-002", 2).await;
    let system = token(app, System);
    for target in [Own, OtherRm, OtherBranch, Layered] {
        app.clients()
            .upsert_client(with_token(
                &system,
                pb::UpsertClientRequest {
                    client: Some(client_record(target)),
                },
            ))
            .await
            .unwrap();
        let (_, primary, wealth) = coverage(target);
        app.clients()
            .assign_coverage(with_token(
                &system,
                pb::AssignCoverageRequest {
                    client_id: client_id(target).into(),
                    primary_rm_id: primary.into(),
                    wealth_manager_id: wealth.into(),
                    reason: "matrix".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
}

/// What a call answered: a record to inspect, an empty page, or plain success.
enum Answer {
    Client(Box<pb::Client>),
    NoClient,
    Done,
}

async fn call_client_rpc(
    app: &TestApp,
    caller: Caller,
    rpc: ClientRpc,
    target: Target,
) -> Result<Answer, tonic::Status> {
    let token = token(app, caller);
    let id = client_id(target).to_owned();
    let mut clients = app.clients();
    let (_, primary, wealth) = coverage(target);
    match rpc {
        GetClient => {
            let request = pb::GetClientRequest { client_id: id };
            let response = clients.get_client(with_token(&token, request)).await?;
            Ok(Answer::Client(Box::new(
                response.into_inner().client.unwrap(),
            )))
        }
        SearchClients => {
            let request = pb::SearchClientsRequest {
                client_id: id,
                ..Default::default()
            };
            let response = clients.search_clients(with_token(&token, request)).await?;
            let mut found = response.into_inner().clients;
            assert!(found.len() <= 1);
            Ok(found
                .pop()
                .map_or(Answer::NoClient, |client| Answer::Client(Box::new(client))))
        }
        UpsertClient => {
            let request = pb::UpsertClientRequest {
                client: Some(client_record(target)),
            };
            let response = clients.upsert_client(with_token(&token, request)).await?;
            Ok(Answer::Client(Box::new(
                response.into_inner().client.unwrap(),
            )))
        }
        AssignCoverage => {
            let request = pb::AssignCoverageRequest {
                client_id: id,
                primary_rm_id: primary.into(),
                wealth_manager_id: wealth.into(),
                reason: "matrix".into(),
                ..Default::default()
            };
            let response = clients.assign_coverage(with_token(&token, request)).await?;
            Ok(Answer::Client(Box::new(
                response.into_inner().client.unwrap(),
            )))
        }
        LogInteraction => {
            let request = pb::LogInteractionRequest {
                client_id: id,
                channel: pb::InteractionChannel::Phone as i32,
                summary: "called about the matrix".into(),
                ..Default::default()
            };
            clients.log_interaction(with_token(&token, request)).await?;
            Ok(Answer::Done)
        }
        ListInteractions => {
            let request = pb::ListInteractionsRequest {
                client_id: id,
                ..Default::default()
            };
            clients
                .list_interactions(with_token(&token, request))
                .await?;
            Ok(Answer::Done)
        }
        ListAuditEvents => {
            let request = pb::ListAuditEventsRequest {
                client_id: id,
                ..Default::default()
            };
            clients
                .list_audit_events(with_token(&token, request))
                .await?;
            Ok(Answer::Done)
        }
    }
}

async fn call_directory_rpc(
    app: &TestApp,
    caller: Caller,
    rpc: DirectoryRpc,
    branch: Branch,
) -> Result<(), tonic::Status> {
    let token = token(app, caller);
    let branch = branch_id(branch);
    let mut directory = app.directory();
    match rpc {
        UpsertBranch => {
            let request = pb::UpsertBranchRequest {
                branch: Some(pb::Branch {
                    branch_id: branch.into(),
                    name: format!("Branch {branch}"),
                    city: "Shanghai".into(),
                    time_zone: String::new(),
                }),
            };
            directory.upsert_branch(with_token(&token, request)).await?;
        }
        UpsertStaff => {
            let request = pb::UpsertStaffRequest {
                staff: Some(pb::Staff {
                    staff_id: format!("{branch}-RM-1"),
                    name: format!("Staff {branch}-RM-1"),
                    role: pb::StaffRole::Rm as i32,
                    branch_id: branch.into(),
                    active: true,
                    capacity: 1000,
                    out_of_office_until: None,
                }),
            };
            directory.upsert_staff(with_token(&token, request)).await?;
        }
        PairTeller => {
            let request = pb::PairTellerRequest {
                teller_id: format!("{branch}-T-1"),
                rm_id: format!("{branch}-RM-2"),
                valid_from: None,
                valid_until: None,
            };
            directory.pair_teller(with_token(&token, request)).await?;
        }
        ListStaff => {
            let request = pb::ListStaffRequest {
                branch_id: branch.into(),
                ..Default::default()
            };
            directory.list_staff(with_token(&token, request)).await?;
        }
        GetBranch => {
            let request = pb::GetBranchRequest {
                branch_id: branch.into(),
            };
            directory.get_branch(with_token(&token, request)).await?;
        }
        GetStaff => {
            let request = pb::GetStaffRequest {
                staff_id: format!("{branch}-RM-1"),
            };
            directory.get_staff(with_token(&token, request)).await?;
        }
    }
    Ok(())
}

/// Checks one answer against the table; returns a description of a mismatch.
fn mismatch(answer: Result<Answer, tonic::Status>, expect: Expect) -> Option<String> {
    let client_shows = |client: &pb::Client, national_id: &str, phone: &str| {
        client.national_id == national_id && client.phone == phone && !client.full_name.is_empty()
    };
    let fine = match (&answer, expect) {
        (Err(status), Denied) => status.code() == Code::PermissionDenied,
        (Ok(Answer::Client(client)), Full) => client_shows(client, NATIONAL_ID, PHONE),
        (Ok(Answer::Client(client)), Masked) => {
            client_shows(client, "1101**********1234", "138****5678")
        }
        (Ok(Answer::Client(client)), NameAndTier) => {
            client_shows(client, "", "")
                && client.tier != pb::Tier::Unspecified as i32
                && client.coverage.is_none()
                && client.segments.is_empty()
        }
        (Ok(Answer::NoClient), Nothing) => true,
        (Ok(Answer::Done | Answer::Client(_)), Allowed) => true,
        _ => false,
    };
    if fine {
        return None;
    }
    Some(match answer {
        Err(status) => format!("got {:?}: {}", status.code(), status.message()),
        Ok(Answer::Client(client)) => format!(
            "got a client showing national id {:?}, phone {:?}",
            client.national_id, client.phone
        ),
        Ok(Answer::NoClient) => "got an empty page".into(),
        Ok(Answer::Done) => "got OK".into(),
    })
}

async fn the_access_matrix_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    seed_bank(&app).await;
    let mut failures = Vec::new();
    let mut client_denials = 0;
    for (caller, rpc, expectations) in CLIENT_MATRIX {
        for (target, expect) in [Own, OtherRm, OtherBranch, Layered]
            .into_iter()
            .zip(expectations)
        {
            client_denials += usize::from(*expect == Denied);
            let answer = call_client_rpc(&app, *caller, *rpc, target).await;
            if let Some(why) = mismatch(answer, *expect) {
                failures.push(format!(
                    "{caller:?} {rpc:?} {target:?}: want {expect:?}, {why}"
                ));
            }
        }
    }
    let mut directory_write_denials = 0;
    for (caller, rpc, expectations) in DIRECTORY_MATRIX {
        for (branch, expect) in [Branch::Own, Branch::Other].into_iter().zip(expectations) {
            let writes = matches!(
                rpc,
                DirectoryRpc::UpsertBranch | DirectoryRpc::UpsertStaff | DirectoryRpc::PairTeller
            );
            directory_write_denials += usize::from(writes && *expect == Denied);
            let answer = call_directory_rpc(&app, *caller, *rpc, branch)
                .await
                .map(|()| Answer::Done);
            if let Some(why) = mismatch(answer, *expect) {
                failures.push(format!(
                    "{caller:?} {rpc:?} {branch:?}: want {expect:?}, {why}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the matrix failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every refusal of client data, and of a directory write, is on the trail.
    let denied = app
        .count(
            "SELECT COUNT(*) FROM audit_events WHERE decision = 'denied' \
             AND action NOT LIKE 'directory.%'",
        )
        .await;
    assert_eq!(denied, i64::try_from(client_denials).unwrap());
    let denied = app
        .count(
            "SELECT COUNT(*) FROM audit_events WHERE decision = 'denied' \
             AND action LIKE 'directory.%'",
        )
        .await;
    assert_eq!(denied, i64::try_from(directory_write_denials).unwrap());
    app.stop().await;
}

/// A request with `authorization: Bearer <token>`, or none for an empty token.
fn maybe_authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    if token.is_empty() {
        tonic::Request::new(message)
    } else {
        with_token(token, message)
    }
}

#[tokio::test]
async fn every_rpc_needs_a_valid_token() {
    let app = spawn_app(Backend::Embedded).await;
    let expired = app.expired_token("B-001-RM-1", Role::Rm, "B-001");
    for token in ["", "not-a-jwt", expired.as_str()] {
        let mut clients = app.clients();
        let mut directory = app.directory();
        let answers = [
            clients
                .get_client(maybe_authorized(token, Default::default()))
                .await
                .err(),
            clients
                .search_clients(maybe_authorized(token, Default::default()))
                .await
                .err(),
            clients
                .upsert_client(maybe_authorized(token, Default::default()))
                .await
                .err(),
            clients
                .log_interaction(maybe_authorized(token, Default::default()))
                .await
                .err(),
            clients
                .list_audit_events(maybe_authorized(token, Default::default()))
                .await
                .err(),
            directory
                .list_staff(maybe_authorized(token, Default::default()))
                .await
                .err(),
            directory
                .upsert_staff(maybe_authorized(token, Default::default()))
                .await
                .err(),
        ];
        for status in answers {
            assert_eq!(
                status.map(|s| s.code()),
                Some(Code::Unauthenticated),
                "token {token:?}"
            );
        }
    }
    app.stop().await;
}

on_both_backends!(the_access_matrix_holds,);
