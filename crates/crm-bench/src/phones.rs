//! 10,000 RM phones on one referrals process (issue 14): the suite as deployed
//! (`crm serve` per service, referrals twice), every phone a WatchWorkItems
//! stream of its own RM's token on `referrals-a`, over `--connections` HTTP/2
//! connections. It reports:
//!
//! - what an idle stream costs: resident memory of the referrals process and of
//!   the broker before and after the streams opened, per stream;
//! - item → phone latency with every phone connected: walk-in referrals made at
//!   `--rate` on `referrals-b`, from the moment each was due to its item's
//!   arrival on its RM's phone (the live feed crosses processes through
//!   RabbitMQ), and how many never arrived;
//! - the reconnect storm: every connection dropped at once, as a network blip
//!   does, and every phone reconnecting at once — first resuming from the newest
//!   change it had seen (`resume_from`), then without (every open item again);
//!   how many phones caught up within 1, 5, 10 and 30 s, the slowest, the
//!   refusals, and the most queries the suite had running at once meanwhile.
//!
//! The baseline is the broker's own confirmed publish → consume at the same
//! rate, measured first in the same run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_proto::v1::referral_service_client::ReferralServiceClient;
use futures::StreamExt;
use hdrhistogram::Histogram;
use sea_orm::ConnectionTrait;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::raw;
use crate::referrals::{
    Keys, Servers, authorized, cluster, histogram, micros, ms, resident_memory_mb, seed_bank,
    walk_in_referral,
};

#[derive(clap::Args)]
pub struct PhonesBench {
    #[command(flatten)]
    servers: Servers,
    /// RM phones, each its own RM (spread over `--branches`).
    #[arg(long, default_value_t = 10_000)]
    phones: usize,
    /// HTTP/2 connections the phones share (as a mobile backend's would).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    #[arg(long, default_value_t = 100)]
    branches: usize,
    /// Walk-in referrals a second while every phone is connected.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

/// One phone: its RM's token, and the newest change it has shown.
struct Phone {
    token: String,
    newest: Mutex<Option<prost_types::Timestamp>>,
}

/// Streams opened together: when each caught up, and what was refused.
struct Generation {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
    caught_up: Arc<Mutex<Vec<Option<Instant>>>>,
    refused: Arc<Mutex<HashMap<String, u64>>>,
}

impl Generation {
    /// Waits until every phone caught up or `limit` passed; the times, in order.
    async fn wait_caught_up(&self, limit: Duration) -> Vec<Option<Duration>> {
        let deadline = Instant::now() + limit;
        loop {
            let (done, refused) = {
                let caught_up = self.caught_up.lock().map(|c| c.iter().flatten().count());
                let refused = self.refused.lock().map(|r| r.values().sum::<u64>());
                (caught_up.unwrap_or(0), refused.unwrap_or(0))
            };
            let total = self.tasks.len();
            if done + usize::try_from(refused).unwrap_or(0) >= total || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.caught_up
            .lock()
            .map(|caught_up| {
                caught_up
                    .iter()
                    .map(|at| at.map(|at| at.saturating_duration_since(self.started)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every stream and connection at once.
    async fn drop_all(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// How a generation of phones converged.
struct Convergence {
    phones: usize,
    within: Vec<(u64, usize)>,
    slowest: Option<Duration>,
    refused: HashMap<String, u64>,
    most_active_queries: i64,
}

impl Convergence {
    fn of(
        times: &[Option<Duration>],
        refused: HashMap<String, u64>,
        most_active_queries: i64,
    ) -> Self {
        let within = [1u64, 5, 10, 30]
            .into_iter()
            .map(|secs| {
                let count = times
                    .iter()
                    .flatten()
                    .filter(|time| time.as_secs_f64() <= secs as f64)
                    .count();
                (secs, count)
            })
            .collect();
        Convergence {
            phones: times.len(),
            within,
            slowest: times.iter().flatten().max().copied(),
            refused,
            most_active_queries,
        }
    }

    fn converged(&self) -> usize {
        self.within.last().map_or(0, |(_, count)| *count)
    }

    fn line(&self, name: &str) -> String {
        let within = self
            .within
            .iter()
            .map(|(secs, count)| format!("{count} within {secs} s"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{name}: {} phones — {within}; slowest {:.2} s; refused {:?}; at most {} queries running at once",
            self.phones,
            self.slowest
                .map_or(f64::NAN, |slowest| slowest.as_secs_f64()),
            self.refused,
            self.most_active_queries
        )
    }

    fn figures(&self) -> serde_json::Value {
        serde_json::json!({
            "phones": self.phones,
            "caught_up_within_seconds": self.within.iter().map(|(secs, count)| (secs.to_string(), *count)).collect::<HashMap<_, _>>(),
            "slowest_seconds": self.slowest.map(|slowest| slowest.as_secs_f64()),
            "refused": self.refused,
            "most_active_queries": self.most_active_queries,
        })
    }
}

/// The broker's process (RabbitMQ's Erlang VM on this machine), if found.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("beam.smp") && cmdline.contains("rabbit")).then_some(pid)
        })
}

impl PhonesBench {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut cluster = cluster("bench-phones", &self.servers).await?;
        let result = async {
            cluster.start_all().await?;
            self.measure(&cluster).await
        }
        .await;
        cluster.tear_down().await?;
        result
    }

    async fn measure(&self, cluster: &crm_chaos::cluster::Cluster) -> anyhow::Result<()> {
        let keys = Keys::hs256(crm_chaos::cluster::JWT_SECRET)?;
        let branches = self.branches.max(1);
        let rms = self.phones.div_ceil(branches);
        println!("phones: seeding {branches} branches of {rms} RMs");
        let started = Instant::now();
        seed_bank(&cluster.channel("clients")?, &keys, branches, rms).await?;
        let referrals_db = cluster.schema("referrals").await?;
        wait_for_routing(&referrals_db, u64::try_from(branches * rms)?).await?;
        println!("phones: seeded in {:.0} s", started.elapsed().as_secs_f64());

        let phones: Arc<Vec<Phone>> = Arc::new(
            (0..self.phones)
                .map(|i| {
                    let branch = format!("B-{:03}", i % branches);
                    let rm = format!("{branch}-RM-{}", i / branches);
                    Ok(Phone {
                        token: keys.token(&rm, Role::Rm, &branch)?,
                        newest: Mutex::new(None),
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        );
        let referrals_pid = cluster
            .pids()
            .into_iter()
            .find(|(name, _)| *name == "referrals-a")
            .map(|(_, pid)| pid)
            .context("referrals-a is not running")?;
        let broker = broker_pid();
        let rss = |pid: Option<u32>| pid.map_or(f64::NAN, resident_memory_mb);

        // The broker alone first: confirmed publish → consume at the same rate.
        let baseline_for = Duration::from_secs(self.seconds.min(10));
        let raw_broker = raw::rabbitmq(
            &self.servers.amqp_url,
            &format!("{}raw.phones", cluster.queue_prefix),
            self.rate,
            baseline_for,
        )
        .await?;

        let service_before = rss(Some(referrals_pid));
        let broker_before = rss(broker);
        let addr = cluster.addr("referrals-a")?;
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        println!(
            "phones: opening {} streams over {} connections",
            self.phones, self.connections
        );
        let first = self.open(addr, &phones, &arrivals, false).await?;
        let opened = Convergence::of(
            &first.wait_caught_up(Duration::from_secs(120)).await,
            first.refused.lock().map(|r| r.clone()).unwrap_or_default(),
            0,
        );
        println!("{}", opened.line("first connect"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let service_after = rss(Some(referrals_pid));
        let broker_after = rss(broker);
        let open_streams = opened.converged().max(1) as f64;
        let per_stream_kb = |before: f64, after: f64| (after - before) * 1024.0 / open_streams;

        // Items while every phone is connected.
        println!(
            "phones: walk-in referrals at {}/s for {} s on referrals-b",
            self.rate, self.seconds
        );
        let due: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let tellers: Arc<Vec<String>> = Arc::new(
            (0..branches)
                .map(|b| {
                    let branch = format!("B-{b:03}");
                    keys.token(&format!("{branch}-T-1"), Role::Teller, &branch)
                })
                .collect::<anyhow::Result<_>>()?,
        );
        let maker = cluster.channel("referrals-b")?;
        let rpc = raw::open_loop(self.rate, Duration::from_secs(self.seconds), |n, due_at| {
            let mut referrals = ReferralServiceClient::new(maker.clone());
            let teller = tellers[usize::try_from(n).unwrap_or(0) % tellers.len()].clone();
            let due = due.clone();
            async move {
                let made = referrals
                    .create_referral(authorized(
                        &teller,
                        walk_in_referral(format!("phones-{n}"), n, "137"),
                    ))
                    .await
                    .ok()?;
                let referral_id = made.into_inner().referral?.referral_id;
                if let Ok(mut due) = due.lock() {
                    due.insert(referral_id, due_at);
                }
                Some(Instant::now())
            }
        })
        .await?;
        let (to_phone, lost) = arrivals_after(&due, &arrivals, Duration::from_secs(10)).await?;

        // The reconnect storm: every connection dropped at once, then every phone
        // back at once — resuming, then from scratch.
        first.drop_all().await;
        let resumed = self
            .storm(addr, &phones, &arrivals, true, &referrals_db)
            .await?;
        println!("{}", resumed.1.line("storm, resuming"));
        resumed.0.drop_all().await;
        let full = self
            .storm(addr, &phones, &arrivals, false, &referrals_db)
            .await?;
        println!("{}", full.1.line("storm, every open item again"));
        let alive = cluster
            .wait_healthy("referrals-a", Duration::from_secs(5))
            .await;
        full.0.drop_all().await;

        let service_kb = per_stream_kb(service_before, service_after);
        let broker_kb = per_stream_kb(broker_before, broker_after);
        println!();
        println!(
            "{:<44} {:>10} {:>10} {:>10} {:>8}",
            "scenario", "p50 ms", "p99 ms", "max ms", "lost"
        );
        let row = |name: String, latencies: &Histogram<u64>, lost: u64| {
            println!(
                "{name:<44} {:>10.2} {:>10.2} {:>10.2} {lost:>8}",
                ms(latencies, 0.5),
                ms(latencies, 0.99),
                latencies.max() as f64 / 1000.0,
            );
        };
        row(
            format!("raw: confirmed publish → consume {}/s", self.rate),
            &raw_broker.latencies,
            raw_broker.offered - raw_broker.completed,
        );
        row(
            format!("CreateReferral RPC {}/s", self.rate),
            &rpc.latencies,
            rpc.errors,
        );
        row(
            format!("due → phone, {} phones open", opened.converged()),
            &to_phone,
            lost,
        );
        let ratio = ms(&to_phone, 0.99) / raw_broker.ms(0.99).max(0.001);
        println!(
            "due → phone p99 is {ratio:.1}× the broker's own; goal < 100 ms: {}",
            if ms(&to_phone, 0.99) < 100.0 && lost == 0 && rpc.errors == 0 {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "memory per idle stream: referrals process {service_kb:.1} KB ({service_before:.0} → {service_after:.0} MB), \
             broker {broker_kb:.1} KB ({broker_before:.0} → {broker_after:.0} MB)"
        );
        println!(
            "referrals-a after the storms: {}",
            match &alive {
                Ok(()) => "SERVING".to_owned(),
                Err(error) => format!("NOT SERVING ({error})"),
            }
        );
        let figures = serde_json::json!({
            "phones": self.phones,
            "connections": self.connections,
            "rate": self.rate,
            "seconds": self.seconds,
            "first_connect": opened.figures(),
            "memory_mb": {
                "referrals_before": service_before, "referrals_after": service_after,
                "broker_before": broker_before, "broker_after": broker_after,
                "referrals_kb_per_stream": service_kb, "broker_kb_per_stream": broker_kb,
            },
            "baseline_publish_consume": {
                "p50_ms": raw_broker.ms(0.5), "p99_ms": raw_broker.ms(0.99),
                "offered": raw_broker.offered, "completed": raw_broker.completed,
            },
            "create_referral_rpc": {
                "p50_ms": rpc.ms(0.5), "p99_ms": rpc.ms(0.99),
                "offered": rpc.offered, "errors": rpc.errors,
            },
            "due_to_phone": {
                "p50_ms": ms(&to_phone, 0.5), "p99_ms": ms(&to_phone, 0.99),
                "max_ms": to_phone.max() as f64 / 1000.0, "lost": lost,
                "p99_x_baseline": ratio,
            },
            "storm_resuming": resumed.1.figures(),
            "storm_full_snapshot": full.1.figures(),
            "serving_after_storms": alive.is_ok(),
        });
        crate::results::save("phones", &referrals_db, figures).await?;
        Ok(())
    }

    /// Opens every phone's stream at once over fresh connections.
    async fn open(
        &self,
        addr: std::net::SocketAddr,
        phones: &Arc<Vec<Phone>>,
        arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
        resume: bool,
    ) -> anyhow::Result<Generation> {
        let mut channels: Vec<Channel> = Vec::with_capacity(self.connections);
        for _ in 0..self.connections.max(1) {
            channels.push(
                Endpoint::from_shared(format!("http://{addr}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?,
            );
        }
        let stop = CancellationToken::new();
        let caught_up = Arc::new(Mutex::new(vec![None; phones.len()]));
        let refused: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(phones.len());
        for index in 0..phones.len() {
            let channel = channels[index % channels.len()].clone();
            let (phones, arrivals, stop) = (phones.clone(), arrivals.clone(), stop.clone());
            let (caught_up, refused) = (caught_up.clone(), refused.clone());
            tasks.push(tokio::spawn(async move {
                let phone = &phones[index];
                let resume_from = if resume {
                    phone.newest.lock().ok().and_then(|newest| *newest)
                } else {
                    None
                };
                let request = pb::WatchWorkItemsRequest {
                    resume_from,
                    mark_caught_up: true,
                };
                let mut client = ReferralServiceClient::new(channel);
                let opened = tokio::select! {
                    () = stop.cancelled() => return,
                    opened = client.watch_work_items(authorized(&phone.token, request)) => opened,
                };
                let mut stream = match opened {
                    Ok(stream) => stream.into_inner(),
                    Err(status) => {
                        if let Ok(mut refused) = refused.lock() {
                            *refused.entry(format!("{:?}", status.code())).or_default() += 1;
                        }
                        return;
                    }
                };
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = stream.next() => message,
                    };
                    match message {
                        Some(Ok(message)) if message.caught_up => {
                            if let Ok(mut caught_up) = caught_up.lock() {
                                caught_up[index] = Some(Instant::now());
                            }
                        }
                        Some(Ok(message)) => {
                            let Some(item) = message.work_item else {
                                continue;
                            };
                            if let Ok(mut arrivals) = arrivals.lock() {
                                arrivals
                                    .entry(item.source_id.clone())
                                    .or_insert_with(Instant::now);
                            }
                            if let (Some(updated_at), Ok(mut newest)) =
                                (item.updated_at, phone.newest.lock())
                            {
                                let later = newest.as_ref().is_none_or(|seen| {
                                    (updated_at.seconds, updated_at.nanos)
                                        > (seen.seconds, seen.nanos)
                                });
                                if later {
                                    *newest = Some(updated_at);
                                }
                            }
                        }
                        Some(Err(status)) => {
                            if let Ok(mut refused) = refused.lock() {
                                *refused
                                    .entry(format!("{:?} (ended)", status.code()))
                                    .or_default() += 1;
                            }
                            return;
                        }
                        None => return,
                    }
                }
            }));
        }
        Ok(Generation {
            stop,
            tasks,
            started,
            caught_up,
            refused,
        })
    }

    /// Every phone back at once; how they converged, and the most queries the
    /// suite's database ran at once meanwhile.
    async fn storm(
        &self,
        addr: std::net::SocketAddr,
        phones: &Arc<Vec<Phone>>,
        arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
        resume: bool,
        db: &sea_orm::DatabaseConnection,
    ) -> anyhow::Result<(Generation, Convergence)> {
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn(most_active_queries(db.clone(), sampling.clone()));
        let generation = self.open(addr, phones, arrivals, resume).await?;
        let times = generation.wait_caught_up(Duration::from_secs(60)).await;
        sampling.cancel();
        let most_active = sampler.await.unwrap_or(0);
        let refused = generation
            .refused
            .lock()
            .map(|refused| refused.clone())
            .unwrap_or_default();
        Ok((generation, Convergence::of(&times, refused, most_active)))
    }
}

/// Waits until the referrals service's copy of the directory holds `staff`.
async fn wait_for_routing(db: &sea_orm::DatabaseConnection, staff: u64) -> anyhow::Result<()> {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let have = crm_referrals::store::routing_staff::Entity::find()
            .count(db)
            .await?;
        if have >= staff {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "routing saw {have} of {staff} staff"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The most queries the run's database ran at once (other than this sampler),
/// sampled every 20 ms until `stop`.
async fn most_active_queries(db: sea_orm::DatabaseConnection, stop: CancellationToken) -> i64 {
    let mut most = 0;
    while !stop.is_cancelled() {
        let sampled = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND state = 'active' \
                 AND pid <> pg_backend_pid()",
            ))
            .await;
        if let Ok(Some(row)) = sampled
            && let Ok(active) = row.try_get_by_index::<i64>(0)
        {
            most = most.max(active);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    most
}

/// Due → first arrival of every referral made, waiting up to `grace` for the
/// last; and how many never arrived.
async fn arrivals_after(
    due: &Mutex<HashMap<String, Instant>>,
    arrivals: &Mutex<HashMap<String, Instant>>,
    grace: Duration,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let deadline = Instant::now() + grace;
    loop {
        let missing = {
            let due = due.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            due.keys().filter(|id| !arrivals.contains_key(*id)).count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let due = due.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut latencies = histogram()?;
    let mut lost = 0;
    for (referral_id, due_at) in due.iter() {
        match arrivals.get(referral_id) {
            Some(arrived) => {
                latencies.saturating_record(micros(arrived.saturating_duration_since(*due_at)));
            }
            None => lost += 1,
        }
    }
    Ok((latencies, lost))
}
