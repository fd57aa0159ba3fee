//! Referrals under sustained load (issue 4's figures): CreateReferral at a fixed
//! rate (500/s by default) for a fixed time with 50 RMs watching their streams,
//! over the real PostgreSQL and RabbitMQ. Measured per referral: the RPC's own
//! latency, and the time from the RPC's answer to the item on the RM's stream.
//! The baseline is GetBranch sent at the same rate in the same run.
//!
//! The bank: 5 branches, 10 RMs each (plus a manager and an unpaired teller), so
//! every walk-in referral goes through the branch pool's least-loaded choice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_proto::v1::directory_service_client::DirectoryServiceClient;
use crm_proto::v1::referral_service_client::ReferralServiceClient;
use futures::StreamExt;
use hdrhistogram::Histogram;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const BRANCHES: usize = 5;
const RMS_PER_BRANCH: usize = 10;
const JWT_SECRET: &str = "bench-only-jwt-secret-0123456789";

/// The PostgreSQL and RabbitMQ a benchmark runs against.
#[derive(clap::Args)]
pub(crate) struct Servers {
    #[arg(
        long,
        env = "CRM_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub(crate) database_url: String,
    #[arg(
        long,
        env = "CRM_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(crate) amqp_url: String,
}

#[derive(clap::Args)]
pub struct ReferralsBench {
    #[command(flatten)]
    servers: Servers,
    /// CreateReferral calls per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Not recorded: the start of the run, while pools and caches fill.
    #[arg(long, default_value_t = 5)]
    warm_up_secs: u64,
}

pub(crate) fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

pub(crate) fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

pub(crate) struct Keys(crm_auth::JwtKeys);

impl Keys {
    pub(crate) fn hs256(secret: &str) -> anyhow::Result<Keys> {
        Ok(Keys(crm_auth::JwtKeys::hs256(&SecretString::from(secret))?))
    }

    pub(crate) fn token(&self, staff: &str, role: Role, branch: &str) -> anyhow::Result<String> {
        Ok(self.0.mint(
            &StaffId::parse(staff).map_err(anyhow::Error::msg)?,
            role,
            &BranchId::parse(branch).map_err(anyhow::Error::msg)?,
            chrono::Duration::hours(2),
        )?)
    }
}

/// Five branches of ten RMs, a manager and a teller each, in the directory.
pub(crate) async fn seed_bank(channel: &Channel, keys: &Keys) -> anyhow::Result<()> {
    let system = keys.token("SYS-BENCH", Role::System, "HQ-001")?;
    let mut directory = DirectoryServiceClient::new(channel.clone());
    for b in 0..BRANCHES {
        let branch = format!("B-{b:03}");
        directory
            .upsert_branch(authorized(
                &system,
                pb::UpsertBranchRequest {
                    branch: Some(pb::Branch {
                        branch_id: branch.clone(),
                        name: format!("Branch {b}"),
                        city: "Shanghai".into(),
                        time_zone: String::new(),
                    }),
                },
            ))
            .await?;
        let mut staff = vec![
            (format!("{branch}-M"), pb::StaffRole::BranchManager),
            (format!("{branch}-T-1"), pb::StaffRole::Teller),
        ];
        staff.extend((0..RMS_PER_BRANCH).map(|n| (format!("{branch}-RM-{n}"), pb::StaffRole::Rm)));
        for (staff_id, role) in staff {
            directory
                .upsert_staff(authorized(
                    &system,
                    pb::UpsertStaffRequest {
                        staff: Some(pb::Staff {
                            name: format!("Staff {staff_id}"),
                            staff_id,
                            role: role as i32,
                            branch_id: branch.clone(),
                            active: true,
                            capacity: 1000,
                            out_of_office_until: None,
                        }),
                    },
                ))
                .await?;
        }
    }
    Ok(())
}

impl ReferralsBench {
    pub async fn run(self) -> anyhow::Result<()> {
        let schema = format!("bench_referrals_{}", uuid_suffix());
        let prefix = format!("{schema}.");
        let mut settings = crm_runtime::Settings::for_local_app(
            self.servers.database_url.clone(),
            Some(schema.clone()),
            Some(self.servers.amqp_url.clone()),
            prefix,
            JWT_SECRET.to_owned(),
        )?;
        settings.services = vec![
            crm_clients::SERVICE.to_owned(),
            crm_referrals::SERVICE.to_owned(),
        ];
        let shutdown = CancellationToken::new();
        let sections = crm_runtime::ModuleSettings::defaults(crm::MODULES)?;
        let app = crm_runtime::App::build(&settings, &sections, crm::MODULES, shutdown.clone())
            .await
            .context("the app on PostgreSQL and RabbitMQ (are they running? `make services`)")?;
        let addr = app.local_addr()?;
        let db = app.infra().db.clone();
        let server = tokio::spawn(app.run());
        let result = self.measure(addr, &db).await;
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
        crm_store::db::drop_schema(&self.servers.database_url, &schema).await?;
        result
    }

    async fn measure(&self, addr: std::net::SocketAddr, db: &crm_store::Db) -> anyhow::Result<()> {
        let keys = Keys::hs256(JWT_SECRET)?;
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        seed_bank(&channel, &keys).await?;
        // Routing reads its own copy of the directory: wait for it to fill.
        let want = BRANCHES * (RMS_PER_BRANCH + 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            use sea_orm::{EntityTrait, PaginatorTrait};
            let have = crm_referrals::store::routing_staff::Entity::find()
                .count(db)
                .await?;
            if have as usize >= want {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "routing saw {have} of {want} staff"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // 50 phones, each on its own connection, recording when each item arrives.
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let watching = CancellationToken::new();
        let mut watchers = Vec::new();
        for b in 0..BRANCHES {
            for n in 0..RMS_PER_BRANCH {
                let branch = format!("B-{b:03}");
                let token = keys.token(&format!("{branch}-RM-{n}"), Role::Rm, &branch)?;
                let phone = Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?;
                let mut stream = ReferralServiceClient::new(phone)
                    .watch_work_items(authorized(&token, pb::WatchWorkItemsRequest {}))
                    .await?
                    .into_inner();
                let arrivals = arrivals.clone();
                let watching = watching.clone();
                watchers.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = watching.cancelled() => return,
                            message = stream.next() => match message {
                                Some(Ok(message)) => {
                                    if let Some(item) = message.work_item
                                        && let Ok(mut arrivals) = arrivals.lock()
                                    {
                                        arrivals.entry(item.source_id).or_insert_with(Instant::now);
                                    }
                                }
                                _ => return,
                            },
                        }
                    }
                }));
            }
        }

        let baseline = self.open_loop_baseline(&channel, &keys).await?;

        let tellers: Vec<String> = (0..BRANCHES)
            .map(|b| {
                let branch = format!("B-{b:03}");
                keys.token(&format!("{branch}-T-1"), Role::Teller, &branch)
            })
            .collect::<anyhow::Result<_>>()?;
        let answers: Arc<Mutex<Vec<(String, Instant, Instant)>>> = Arc::default();
        let rpc = Arc::new(Mutex::new(histogram()?));
        let errors = Arc::new(Mutex::new(0u64));
        let total = self.rate * (self.seconds + self.warm_up_secs);
        let warm_up_calls = self.rate * self.warm_up_secs;
        let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / self.rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let mut calls = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        println!(
            "bench: CreateReferral at {}/s for {} s (+{} s warm-up), {} RMs watching",
            self.rate,
            self.seconds,
            self.warm_up_secs,
            BRANCHES * RMS_PER_BRANCH
        );
        for n in 0..total {
            ticker.tick().await;
            let mut referrals = ReferralServiceClient::new(channel.clone());
            let teller = tellers[usize::try_from(n).unwrap_or(0) % BRANCHES].clone();
            let (answers, rpc, errors) = (answers.clone(), rpc.clone(), errors.clone());
            let recorded = n >= warm_up_calls;
            calls.push(tokio::spawn(async move {
                let request = authorized(
                    &teller,
                    pb::CreateReferralRequest {
                        idempotency_key: format!("bench-{n}"),
                        prospect: Some(pb::Prospect {
                            full_name: format!("Walk-in {n}"),
                            phone: format!("139{n:08}"),
                        }),
                        need: pb::Need::LargeDeposit as i32,
                        priority: pb::Priority::High as i32,
                        ..Default::default()
                    },
                );
                let sent = Instant::now();
                match referrals.create_referral(request).await {
                    Ok(response) => {
                        let answered = Instant::now();
                        if !recorded {
                            return;
                        }
                        if let Ok(mut rpc) = rpc.lock() {
                            rpc.saturating_record(micros(answered - sent));
                        }
                        if let (Some(referral), Ok(mut answers)) =
                            (response.into_inner().referral, answers.lock())
                        {
                            answers.push((referral.referral_id, sent, answered));
                        }
                    }
                    Err(status) => {
                        if let Ok(mut errors) = errors.lock() {
                            *errors += 1;
                            if *errors <= 3 {
                                eprintln!("  {status:?}");
                            }
                        }
                    }
                }
            }));
        }
        for call in calls {
            call.await?;
        }
        let offered = started.elapsed();
        // Let the last items reach their phones.
        let expected = answers.lock().map(|a| a.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let arrived = arrivals.lock().map(|a| a.len()).unwrap_or(0);
            if arrived >= expected + usize::try_from(warm_up_calls).unwrap_or(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        watching.cancel();
        for watcher in watchers {
            let _ = watcher.await;
        }

        let mut after_answer = histogram()?;
        let mut after_send = histogram()?;
        let mut missing = 0;
        let arrivals = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("arrivals lock"))?;
        let answers = answers
            .lock()
            .map_err(|_| anyhow::anyhow!("answers lock"))?;
        for (referral_id, sent, answered) in answers.iter() {
            match arrivals.get(referral_id) {
                Some(arrived) => {
                    // The push may beat the answer back to the caller: that is 0.
                    after_answer
                        .saturating_record(micros(arrived.saturating_duration_since(*answered)));
                    after_send.saturating_record(micros(arrived.saturating_duration_since(*sent)));
                }
                None => missing += 1,
            }
        }
        let rpc = rpc.lock().map_err(|_| anyhow::anyhow!("rpc lock"))?;
        let errors = *errors.lock().map_err(|_| anyhow::anyhow!("errors lock"))?;
        let achieved = total as f64 / offered.as_secs_f64();
        println!(
            "offered {} calls in {:.1} s ({achieved:.0}/s), {} recorded, {errors} errors, {missing} never reached a phone",
            total,
            offered.as_secs_f64(),
            answers.len()
        );
        println!(
            "{:<40} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
            "measure", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 ×base", "p99 ×base"
        );
        for (name, histogram) in [
            ("baseline: GetBranch at the same rate", &baseline),
            ("CreateReferral RPC", &*rpc),
            ("answer → item on the RM's stream", &after_answer),
            ("send → item on the RM's stream", &after_send),
        ] {
            println!(
                "{:<40} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>9.2} {:>9.2}",
                name,
                ms(histogram, 0.5),
                ms(histogram, 0.9),
                ms(histogram, 0.99),
                histogram.max() as f64 / 1000.0,
                ms(histogram, 0.5) / ms(&baseline, 0.5).max(0.001),
                ms(histogram, 0.99) / ms(&baseline, 0.99).max(0.001),
            );
        }
        let verdict = if ms(&after_send, 0.99) < 100.0 && errors == 0 && missing == 0 {
            "meets"
        } else {
            "MISSES"
        };
        println!(
            "end to end p99 {:.2} ms (send → stream) {verdict} the goal (< 100 ms, nothing lost)",
            ms(&after_send, 0.99)
        );
        Ok(())
    }

    /// GetBranch at the same rate for 10 s: what any authenticated RPC costs here.
    async fn open_loop_baseline(
        &self,
        channel: &Channel,
        keys: &Keys,
    ) -> anyhow::Result<Histogram<u64>> {
        let token = keys.token("B-000-RM-0", Role::Rm, "B-000")?;
        let latencies = Arc::new(Mutex::new(histogram()?));
        let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / self.rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut calls = Vec::new();
        for _ in 0..self.rate * 10 {
            ticker.tick().await;
            let mut directory = DirectoryServiceClient::new(channel.clone());
            let request = authorized(
                &token,
                pb::GetBranchRequest {
                    branch_id: "B-000".into(),
                },
            );
            let latencies = latencies.clone();
            calls.push(tokio::spawn(async move {
                let sent = Instant::now();
                if directory.get_branch(request).await.is_ok()
                    && let Ok(mut latencies) = latencies.lock()
                {
                    latencies.saturating_record(micros(sent.elapsed()));
                }
            }));
        }
        for call in calls {
            call.await?;
        }
        let latencies = latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("baseline lock"))?;
        Ok(latencies.clone())
    }
}

fn uuid_suffix() -> String {
    format!("{:x}", rand::random::<u64>())
}
