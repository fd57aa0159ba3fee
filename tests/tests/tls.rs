//! TLS everywhere a bank's network team asks for it, with certificates the test
//! makes: gRPC over TLS, mutual TLS (a caller without the bank's client
//! certificate is refused), and PostgreSQL's `sslmode` honoured. (AMQP over TLS is
//! tested against a broker node of its own, in `broker_cluster.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestCa, postgres_url, spawn_app_with_settings, with_token};
use sea_orm::ConnectionTrait;

async fn get_branch(channel: tonic::transport::Channel, token: &str) -> Result<(), tonic::Status> {
    pb::directory_service_client::DirectoryServiceClient::new(channel)
        .get_branch(with_token(
            token,
            pb::GetBranchRequest {
                branch_id: "B-001".into(),
            },
        ))
        .await
        .map(drop)
}

async fn channel(
    addr: std::net::SocketAddr,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint =
        tonic::transport::Channel::from_shared(format!("{scheme}://{addr}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

fn trusting(ca: &TestCa) -> tonic::transport::ClientTlsConfig {
    tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(std::fs::read(ca.ca_path()).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_refuses_plaintext() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let ca_path = ca.ca_path();
    let app = spawn_app_with_settings(Backend::Embedded, &[], move |settings| {
        settings.tls_cert = Some(cert);
        settings.tls_key = Some(key);
        settings.tls_ca = Some(ca_path);
    })
    .await;
    // The test kit's own channel is TLS: the suite works over it.
    app.seed_branch("B-001", 1).await;
    let token = app.token("B-001-M", Role::BranchManager, "B-001");
    get_branch(
        channel(app.addr, Some(trusting(&ca))).await.unwrap(),
        &token,
    )
    .await
    .unwrap();
    // Plain HTTP/2 to a TLS port gets nowhere.
    let plaintext = match channel(app.addr, None).await {
        Ok(channel) => get_branch(channel, &token).await.is_ok(),
        Err(_) => false,
    };
    assert!(!plaintext, "a plaintext call was answered");
    // A client that doesn't trust the bank's CA won't talk to the server.
    let stranger = TestCa::new();
    let untrusted = match channel(app.addr, Some(trusting(&stranger))).await {
        Ok(channel) => get_branch(channel, &token).await.is_ok(),
        Err(_) => false,
    };
    assert!(
        !untrusted,
        "a server certificate from another CA was accepted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_caller_without_the_banks_certificate() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = ca.issue("teller-app", &["teller-app"]);
    let ca_path = ca.ca_path();
    let app = spawn_app_with_settings(Backend::Distributed, &[], move |settings| {
        settings.tls_cert = Some(cert);
        settings.tls_key = Some(key);
        settings.tls_client_ca = Some(ca_path);
    })
    .await;
    // The services' own calls and the test kit's present the process's
    // certificate: the suite works.
    app.seed_branch("B-001", 1).await;
    let token = app.token("B-001-M", Role::BranchManager, "B-001");
    let with_certificate = trusting(&ca).identity(tonic::transport::Identity::from_pem(
        std::fs::read(client_cert).unwrap(),
        std::fs::read(client_key).unwrap(),
    ));
    get_branch(
        channel(app.addr, Some(with_certificate)).await.unwrap(),
        &token,
    )
    .await
    .expect("a caller with the bank's client certificate is served");
    let without = match channel(app.addr, Some(trusting(&ca))).await {
        Ok(channel) => get_branch(channel, &token).await.is_ok(),
        Err(_) => false,
    };
    assert!(!without, "a caller without a client certificate was served");
    let stranger = TestCa::new();
    let (other_cert, other_key) = stranger.issue("intruder", &["intruder"]);
    let foreign = trusting(&ca).identity(tonic::transport::Identity::from_pem(
        std::fs::read(other_cert).unwrap(),
        std::fs::read(other_key).unwrap(),
    ));
    let intruder = match channel(app.addr, Some(foreign)).await {
        Ok(channel) => get_branch(channel, &token).await.is_ok(),
        Err(_) => false,
    };
    assert!(!intruder, "a client certificate of another CA was accepted");
    app.stop().await;
}

/// `sslmode` in CRM_DATABASE_URL is honoured: `require` gives an encrypted
/// connection; `verify-full` against a CA that did not sign the server's
/// certificate refuses to connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmode_is_honoured() {
    let with_query = |query: &str| {
        let url = postgres_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{query}")
    };
    let app = spawn_app_with_settings(Backend::Distributed, &[], |settings| {
        settings.database_url = Some(with_query("sslmode=require"));
    })
    .await;
    let encrypted = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<bool>(0)
        .unwrap();
    assert!(encrypted, "sslmode=require gave a plaintext connection");
    app.stop().await;

    let stranger = TestCa::new();
    let refused = crm_store::connect(
        &with_query(&format!(
            "sslmode=verify-full&sslrootcert={}",
            stranger.ca_path().display()
        )),
        None,
    )
    .await;
    assert!(
        refused.is_err(),
        "verify-full connected to a server whose certificate the CA did not sign"
    );
}
