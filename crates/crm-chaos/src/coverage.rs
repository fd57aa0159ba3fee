//! Core banking's side of the run: while tellers refer, new clients are opened and
//! given a primary RM at the clients service, a few a second. Each must reach the
//! referrals service's copy (`routing_clients`) however the clients service and
//! the broker fare meanwhile.

use std::time::Duration;

use crm_proto::v1 as pb;
use crm_proto::v1::client_service_client::ClientServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::load::is_retryable;

/// A client opened and covered: who, and by whom.
#[derive(Debug, Clone)]
pub struct Covered {
    pub client_id: String,
    pub primary_rm_id: String,
}

#[derive(Debug, Default)]
pub struct CoverageRun {
    pub covered: Vec<Covered>,
    /// Attempts answered UNAVAILABLE (or timed out) and sent again.
    pub retried_attempts: u64,
    /// Answers not retried: each one a fault of the suite.
    pub errors: Vec<String>,
}

fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(5));
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Calls `call` until it succeeds or is answered with a code not worth retrying.
macro_rules! with_retries {
    ($run:expr, $stop:expr, $call:expr) => {{
        let mut backoff = Duration::from_millis(100);
        loop {
            if $stop.is_cancelled() {
                break false;
            }
            match $call.await {
                Ok(_) => break true,
                Err(status) if is_retryable(status.code()) => {
                    $run.retried_attempts += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(status) => {
                    $run.errors
                        .push(format!("{:?}: {}", status.code(), status.message()));
                    break false;
                }
            }
        }
    }};
}

/// Opens and covers clients `K-0000001`… every `every` until `stop`.
pub async fn run(
    channel: Channel,
    system_token: String,
    rms: Vec<(String, String)>,
    every: Duration,
    stop: CancellationToken,
) -> CoverageRun {
    let mut run = CoverageRun::default();
    let mut clients = ClientServiceClient::new(channel);
    let mut n = 0usize;
    while !stop.is_cancelled() {
        n += 1;
        let (rm_id, branch_id) = &rms[n % rms.len()];
        let client_id = format!("K-{n:07}");
        let client = pb::Client {
            client_id: client_id.clone(),
            full_name: format!("Client {n}"),
            national_id: "110101198001011234".into(),
            phone: format!("138{n:08}"),
            home_branch_id: branch_id.clone(),
            kind: pb::ClientKind::Individual as i32,
            ..Default::default()
        };
        let upserted = with_retries!(
            run,
            stop,
            clients.upsert_client(authorized(
                &system_token,
                pb::UpsertClientRequest {
                    client: Some(client.clone()),
                }
            ))
        );
        let assigned = upserted
            && with_retries!(
                run,
                stop,
                clients.assign_coverage(authorized(
                    &system_token,
                    pb::AssignCoverageRequest {
                        client_id: client_id.clone(),
                        primary_rm_id: rm_id.clone(),
                        reason: "chaos run".into(),
                        ..Default::default()
                    }
                ))
            );
        if assigned {
            run.covered.push(Covered {
                client_id,
                primary_rm_id: rm_id.clone(),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => {}
        }
    }
    run
}
