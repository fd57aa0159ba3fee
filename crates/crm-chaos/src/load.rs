//! The teller app as it behaves at a counter: each referral has its own
//! idempotency key; an attempt answered UNAVAILABLE (or not answered within its
//! deadline) is sent again with the same key, to the other replica, with backoff;
//! any other error is final. Every attempt is recorded, so the report can say what
//! each fault cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_proto::v1 as pb;
use crm_proto::v1::referral_service_client::ReferralServiceClient;
use tokio::sync::{Mutex, Semaphore};
use tonic::Code;
use tonic::transport::Channel;

/// How long one attempt may take before the app gives up on it and retries.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(5);
/// How long the app keeps retrying one referral before the teller is told it
/// failed (the key is kept and sent again later).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// One referral the generator made: its key, who sent it, and how it went.
#[derive(Debug, Clone)]
pub struct Call {
    pub key: String,
    pub teller_id: String,
    /// Since the run's start, when the first attempt went out.
    pub started: Duration,
    pub attempts: u32,
    /// Codes of the failed attempts, in order.
    pub failures: Vec<Code>,
    /// The referral's id, once an attempt succeeded.
    pub referral_id: Option<String>,
    /// A code the app does not retry (INTERNAL, INVALID_ARGUMENT, …): a bug.
    pub final_error: Option<(Code, String)>,
}

/// Is this answer one the teller app retries with the same key?
pub fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// A teller at a counter: their token and branch.
#[derive(Clone)]
pub struct Teller {
    pub staff_id: String,
    pub token: String,
}

pub struct Generator {
    pub replicas: Vec<Channel>,
    pub tellers: Vec<Teller>,
    pub started: Instant,
}

fn request(teller: &Teller, key: &str, n: u64) -> tonic::Request<pb::CreateReferralRequest> {
    let mut request = tonic::Request::new(pb::CreateReferralRequest {
        idempotency_key: key.to_owned(),
        client_id: format!("C-{n:07}"),
        need: pb::Need::WealthManagement as i32,
        priority: pb::Priority::Normal as i32,
        note: "chaos run".to_owned(),
        ..Default::default()
    });
    request.set_timeout(ATTEMPT_DEADLINE);
    if let Ok(value) = format!("Bearer {}", teller.token).parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

impl Generator {
    /// Referral number `n`: attempts until one succeeds, a final error, or
    /// `GIVE_UP_AFTER`.
    pub async fn refer(&self, n: u64, key: String) -> Call {
        let teller = &self.tellers[usize::try_from(n).unwrap_or(0) % self.tellers.len()];
        let mut call = Call {
            key,
            teller_id: teller.staff_id.clone(),
            started: self.started.elapsed(),
            attempts: 0,
            failures: Vec::new(),
            referral_id: None,
            final_error: None,
        };
        self.attempt_until_done(&mut call, teller, n).await;
        call
    }

    /// Sends `call` again (a teller retrying a referral whose attempts all failed).
    pub async fn retry(&self, call: &mut Call, n: u64) {
        let teller = self
            .tellers
            .iter()
            .find(|teller| teller.staff_id == call.teller_id)
            .cloned();
        if let Some(teller) = teller {
            self.attempt_until_done(call, &teller, n).await;
        }
    }

    async fn attempt_until_done(&self, call: &mut Call, teller: &Teller, n: u64) {
        let began = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let replica = &self.replicas
                [(usize::try_from(n).unwrap_or(0) + call.attempts as usize) % self.replicas.len()];
            call.attempts += 1;
            let mut client = ReferralServiceClient::new(replica.clone());
            match client.create_referral(request(teller, &call.key, n)).await {
                Ok(response) => {
                    call.referral_id = response
                        .into_inner()
                        .referral
                        .map(|referral| referral.referral_id);
                    return;
                }
                Err(status) if is_retryable(status.code()) => {
                    call.failures.push(status.code());
                    if began.elapsed() > GIVE_UP_AFTER {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(status) => {
                    call.failures.push(status.code());
                    call.final_error = Some((status.code(), status.message().to_owned()));
                    return;
                }
            }
        }
    }
}

/// Sends `total` referrals at `per_second`, each on its own task; the calls as
/// they ended.
pub async fn run(generator: Arc<Generator>, total: u64, per_second: u32) -> Vec<Call> {
    let calls = Arc::new(Mutex::new(Vec::with_capacity(
        usize::try_from(total).unwrap_or(0),
    )));
    // Bounds the calls in flight while a fault holds answers back.
    let in_flight = Arc::new(Semaphore::new(2_000));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let generator = generator.clone();
        let calls = calls.clone();
        tasks.spawn(async move {
            let call = generator.refer(n, format!("chaos-{n:07}")).await;
            calls.lock().await.push((n, call));
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut calls = std::mem::take(&mut *calls.lock().await);
    calls.sort_by_key(|(n, _)| *n);
    calls.into_iter().map(|(_, call)| call).collect()
}
