//! A server configured with the bank's issuer and this application's audience
//! refuses tokens minted for another application, and serves its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_auth::{JwtKeys, JwtPolicy};
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TEST_JWT_SECRET, spawn_process, unique_name, with_token};
use secrecy::SecretString;

fn minted_for(issuer: &str, audience: &str) -> String {
    JwtKeys::hs256(&SecretString::from(TEST_JWT_SECRET))
        .unwrap()
        .with_policy(JwtPolicy {
            issuer: Some(issuer.into()),
            audience: Some(audience.into()),
            ..JwtPolicy::default()
        })
        .mint(
            &StaffId::parse("SYS-TEST").unwrap(),
            Role::System,
            &BranchId::parse("HQ-001").unwrap(),
            chrono::Duration::minutes(5),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_another_application_or_issuer_are_unauthenticated() {
    let folder = std::env::temp_dir().join(unique_name("sqlite"));
    std::fs::create_dir_all(&folder).unwrap();
    let mut settings = crm_runtime::Settings::for_local_app(
        format!("sqlite://{}?mode=rwc", folder.join("crm.db").display()),
        None,
        None,
        String::new(),
        TEST_JWT_SECRET.to_owned(),
    )
    .unwrap();
    settings.jwt_issuer = Some("https://idp.bank.example".into());
    settings.jwt_audience = Some("rm-crm".into());
    let app = spawn_process(Backend::Embedded, settings).await;
    let list = |token: String| {
        let mut directory = app.directory();
        async move {
            directory
                .list_staff(with_token(
                    &token,
                    pb::ListStaffRequest {
                        branch_id: "B-001".into(),
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    list(minted_for("https://idp.bank.example", "rm-crm"))
        .await
        .unwrap();
    for (token, what) in [
        (
            minted_for("https://idp.bank.example", "payroll"),
            "another audience",
        ),
        (
            minted_for("https://evil.example", "rm-crm"),
            "another issuer",
        ),
        (
            app.token("SYS-TEST", Role::System, "HQ-001"),
            "no iss or aud",
        ),
    ] {
        let error = list(token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated, "{what}");
    }
    app.stop().await;
    std::fs::remove_dir_all(&folder).ok();
}
