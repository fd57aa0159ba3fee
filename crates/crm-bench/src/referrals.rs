//! Referrals under sustained load: CreateReferral sent open-loop (each call at its
//! due moment, latency counted from it) over 20 branches, half for clients with a
//! primary RM and half for walk-ins through the branch pool, with every RM's phone
//! watching its stream. Before the suite, the same run measures the raw
//! infrastructure (`raw`): a bare RPC, PostgreSQL's insert + select, RabbitMQ's
//! confirmed publish + consume at the same rate, and a referral's own durable work
//! at full speed; every figure is printed beside its baseline and the ratio, and
//! written as JSON under `bench/results/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_proto::v1::client_service_client::ClientServiceClient;
use crm_proto::v1::directory_service_client::DirectoryServiceClient;
use crm_proto::v1::referral_service_client::ReferralServiceClient;
use futures::StreamExt;
use hdrhistogram::Histogram;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::app::BenchApp;
use crate::raw::{self, OpenLoop};
use crate::results;

/// The signing secret of the benchmarks' tokens (never a deployment's).
pub(crate) const JWT_SECRET: &str = "bench-only-jwt-secret-0123456789";

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

pub(crate) fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A teller's referral of walk-in `n` (no client id, a phone of their own under
/// `phone_prefix`) for a large deposit, under `idempotency_key`.
pub(crate) fn walk_in_referral(
    idempotency_key: String,
    n: u64,
    phone_prefix: &str,
) -> pb::CreateReferralRequest {
    pb::CreateReferralRequest {
        idempotency_key,
        prospect: Some(pb::Prospect {
            full_name: format!("Walk-in {n}"),
            phone: format!("{phone_prefix}{n:08}"),
        }),
        need: pb::Need::LargeDeposit as i32,
        priority: pb::Priority::High as i32,
        ..Default::default()
    }
}

/// The suite as deployed on this machine, not started yet: the `crm` binary
/// beside this one, its processes logging under `logs` beside it, over a fresh
/// database and queue prefix of `servers`.
pub(crate) async fn cluster(
    logs: &str,
    servers: &Servers,
) -> anyhow::Result<crm_chaos::cluster::Cluster> {
    let crm_binary = std::env::current_exe()?.with_file_name("crm");
    anyhow::ensure!(
        crm_binary.exists(),
        "{} is missing: `cargo build --release -p crm` (make bench builds it)",
        crm_binary.display()
    );
    let log_dir = std::env::current_exe()?
        .parent()
        .map(|dir| dir.join(logs))
        .ok_or_else(|| anyhow::anyhow!("no folder for the processes' logs"))?;
    crm_chaos::cluster::Cluster::create(
        crm_binary,
        log_dir,
        &servers.database_url,
        &servers.amqp_url,
    )
    .await
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

/// `branches` branches of `rms_per_branch` RMs, a manager and a teller each, in
/// the directory.
pub(crate) async fn seed_bank(
    channel: &Channel,
    keys: &Keys,
    branches: usize,
    rms_per_branch: usize,
) -> anyhow::Result<()> {
    let system = keys.token("SYS-BENCH", Role::System, "HQ-001")?;
    let mut directory = DirectoryServiceClient::new(channel.clone());
    for b in 0..branches {
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
        staff.extend((0..rms_per_branch).map(|n| (format!("{branch}-RM-{n}"), pb::StaffRole::Rm)));
        // A branch of 100 RMs (the phones scenario) would take a while one by one.
        futures::stream::iter(staff)
            .map(|(staff_id, role)| {
                let mut directory = directory.clone();
                let request = authorized(
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
                );
                async move { directory.upsert_staff(request).await.map(drop) }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, tonic::Status>>()?;
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ReferralsBench {
    #[command(flatten)]
    servers: Servers,
    /// CreateReferral calls per second in the main run.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of the main run (each baseline runs as long, at most 10 s).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Not recorded: the suite at the main rate first, while pools and caches fill.
    #[arg(long, default_value_t = 5)]
    warm_up_secs: u64,
    /// Higher rates tried after the main run, `--step-seconds` each, to find
    /// the highest sustained (comma-separated; `--also-at` alone for none).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "600,750,1000,1500")]
    also_at: Vec<u64>,
    #[arg(long, default_value_t = 15)]
    step_seconds: u64,
    /// Run the services as deployed — a `crm serve` process per service,
    /// referrals twice — instead of inside this process (which then is the load
    /// generator and the phones alone).
    #[arg(long)]
    distributed: bool,
    #[arg(long, default_value_t = 20)]
    branches: usize,
    #[arg(long, default_value_t = 5)]
    rms_per_branch: usize,
}

/// Referral needs a client can have open at once, one referral each.
const NEEDS: u64 = 7;

/// One run of the suite at one rate.
struct SuiteRun {
    rate: u64,
    rpc: OpenLoop,
    /// Due → the item on its RM's stream.
    to_stream: Histogram<u64>,
    /// Answered referrals whose item never reached a stream.
    lost: u64,
}

impl SuiteRun {
    fn sustained(&self) -> bool {
        self.rpc.kept_up()
            && self.rpc.errors == 0
            && self.lost == 0
            && ms(&self.to_stream, 0.99) < 100.0
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rate": self.rate,
            "offered": self.rpc.offered,
            "answered": self.rpc.completed,
            "errors": self.rpc.errors,
            "lost": self.lost,
            "achieved_per_s": self.rpc.achieved_rate(),
            "rpc_p50_ms": self.rpc.ms(0.5),
            "rpc_p99_ms": self.rpc.ms(0.99),
            "to_stream_p50_ms": ms(&self.to_stream, 0.5),
            "to_stream_p99_ms": ms(&self.to_stream, 0.99),
            "sustained": self.sustained(),
        })
    }
}

/// Everyone and everything a run sends as.
struct Bank {
    branches: usize,
    rms_per_branch: usize,
    /// A teller's token per branch.
    tellers: Vec<String>,
    /// Clients with a primary RM, home branch by index.
    clients: u64,
}

impl Bank {
    /// The n-th referral overall: even ones for a client (each client once per
    /// need), odd ones for a walk-in with a phone of their own.
    fn referral(&self, n: u64) -> (String, pb::CreateReferralRequest) {
        let base = pb::CreateReferralRequest {
            idempotency_key: format!("bench-{n}"),
            priority: pb::Priority::High as i32,
            ..Default::default()
        };
        if n.is_multiple_of(2) {
            // Every client once before anyone's second need, so that a
            // branch's referrals come spread out, as a day's do.
            let k = n / 2;
            let clients = self.clients.max(1);
            let client = k % clients;
            let branch = usize::try_from(client).unwrap_or(0) % self.branches;
            let request = pb::CreateReferralRequest {
                client_id: client_id(client),
                need: i32::try_from((k / clients) % NEEDS + 1).unwrap_or(1),
                ..base
            };
            (self.tellers[branch].clone(), request)
        } else {
            let branch = usize::try_from(n / 2).unwrap_or(0) % self.branches;
            let request = walk_in_referral(base.idempotency_key, n / 2, "139");
            (self.tellers[branch].clone(), request)
        }
    }
}

fn client_id(n: u64) -> String {
    format!("C-B{n:07}")
}

fn branch_id(b: usize) -> String {
    format!("B-{b:03}")
}

/// What a run sends to: the suite in this process, or the processes of the
/// distributed mode.
struct Target {
    mode: &'static str,
    /// The client book and the directory.
    clients: Channel,
    /// Each referrals replica; calls go round them as a load balancer's would.
    referrals: Vec<Channel>,
    /// Where phones connect, in turn.
    phones: Vec<std::net::SocketAddr>,
    /// The referrals service's schema: routing's copies, and room for the raw
    /// tables of the baselines.
    db: crm_store::Db,
    prefix: String,
    keys: Keys,
    /// The processes whose resident memory is reported.
    processes: Vec<(String, u32)>,
}

impl ReferralsBench {
    pub async fn run(self) -> anyhow::Result<()> {
        if self.distributed {
            return self.run_distributed().await;
        }
        let app = BenchApp::start(
            &self.servers,
            "bench_referrals",
            &[crm_clients::SERVICE, crm_referrals::SERVICE],
        )
        .await?;
        let channel = app.channel().await?;
        let target = Target {
            mode: "embedded: clients and referrals, the load and the phones in one process",
            clients: channel.clone(),
            referrals: vec![channel],
            phones: vec![app.addr],
            db: app.db.clone(),
            prefix: app.prefix.clone(),
            keys: Keys::hs256(JWT_SECRET)?,
            processes: vec![("crm-bench (everything)".to_owned(), std::process::id())],
        };
        let result = self.measure(&target).await;
        app.stop().await?;
        result
    }

    /// The distributed mode: `crm serve` per service (the `crm` binary beside
    /// this one), each on its own schema of a fresh database, referrals twice.
    async fn run_distributed(&self) -> anyhow::Result<()> {
        let mut cluster = cluster("bench-cluster", &self.servers).await?;
        let result = async {
            cluster.start_all().await?;
            let target = Target {
                mode: "distributed: crm serve per service (clients, referrals ×2, events, \
                       campaigns); the load and the phones in this process",
                clients: cluster.channel("clients")?,
                referrals: vec![
                    cluster.channel("referrals-a")?,
                    cluster.channel("referrals-b")?,
                ],
                phones: vec![cluster.addr("referrals-a")?, cluster.addr("referrals-b")?],
                db: cluster.schema("referrals").await?,
                prefix: cluster.queue_prefix.clone(),
                keys: Keys::hs256(crm_chaos::cluster::JWT_SECRET)?,
                processes: cluster
                    .pids()
                    .into_iter()
                    .map(|(name, pid)| (name.to_owned(), pid))
                    .chain(std::iter::once((
                        "crm-bench (load, phones)".to_owned(),
                        std::process::id(),
                    )))
                    .collect(),
            };
            self.measure(&target).await
        }
        .await;
        cluster.tear_down().await?;
        result
    }

    /// Every referral any run of this bench sends.
    fn total_referrals(&self) -> u64 {
        let main = self.rate * (self.seconds + self.warm_up_secs);
        main + self
            .also_at
            .iter()
            .map(|rate| rate * self.step_seconds)
            .sum::<u64>()
    }

    async fn seed(
        &self,
        channel: &Channel,
        keys: &Keys,
        db: &crm_store::Db,
    ) -> anyhow::Result<Bank> {
        seed_bank(channel, keys, self.branches, self.rms_per_branch).await?;
        // Enough clients that none is referred twice for the same need.
        let clients = (self.total_referrals() / 2).div_ceil(NEEDS) + 1;
        let system = keys.token("SYS-BENCH", Role::System, "HQ-001")?;
        let (branches, rms) = (self.branches, self.rms_per_branch);
        futures::stream::iter(0..clients)
            .map(|n| {
                let mut book = ClientServiceClient::new(channel.clone());
                let system = system.clone();
                async move {
                    let index = usize::try_from(n).unwrap_or(0);
                    let branch = branch_id(index % branches);
                    book.upsert_client(authorized(
                        &system,
                        pb::UpsertClientRequest {
                            client: Some(pb::Client {
                                client_id: client_id(n),
                                full_name: format!("Client {n}"),
                                national_id: "110101198001011234".into(),
                                phone: format!("138{n:08}"),
                                home_branch_id: branch.clone(),
                                kind: pb::ClientKind::Individual as i32,
                                ..Default::default()
                            }),
                        },
                    ))
                    .await?;
                    book.assign_coverage(authorized(
                        &system,
                        pb::AssignCoverageRequest {
                            client_id: client_id(n),
                            primary_rm_id: format!("{branch}-RM-{}", (index / branches) % rms),
                            reason: "bench".into(),
                            ..Default::default()
                        },
                    ))
                    .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        // Routing reads its own copies of the directory and the book: wait for them.
        use sea_orm::{EntityTrait, PaginatorTrait};
        let staff = u64::try_from(branches * (rms + 1))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let have_staff = crm_referrals::store::routing_staff::Entity::find()
                .count(db)
                .await?;
            let have_clients = crm_referrals::store::routing_client::Entity::find()
                .count(db)
                .await?;
            if have_staff >= staff && have_clients >= clients {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "routing saw {have_staff} of {staff} staff, {have_clients} of {clients} clients"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let tellers = (0..branches)
            .map(|b| {
                keys.token(
                    &format!("{}-T-1", branch_id(b)),
                    Role::Teller,
                    &branch_id(b),
                )
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Bank {
            branches,
            rms_per_branch: rms,
            tellers,
            clients,
        })
    }

    async fn measure(&self, target: &Target) -> anyhow::Result<()> {
        let (db, prefix, keys) = (&target.db, target.prefix.as_str(), &target.keys);
        println!(
            "bench: seeding {} branches of {} RMs and the clients of {} referrals",
            self.branches,
            self.rms_per_branch,
            self.total_referrals()
        );
        let bank = Arc::new(self.seed(&target.clients, keys, db).await?);

        // Every RM's phone, on connections of their own, noting when each item
        // first arrives.
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let watching = CancellationToken::new();
        let watchers = watch_every_queue(&target.phones, keys, &bank, &arrivals, &watching).await?;

        // The raw infrastructure first, in this run.
        let baseline_for = Duration::from_secs(self.seconds.min(10));
        println!("bench: baselines ({} s each)", baseline_for.as_secs());
        let raw_rpc = raw::tonic_rpc(self.rate, baseline_for).await?;
        let raw_db = raw::postgres(db, self.rate, baseline_for).await?;
        let raw_broker = raw::rabbitmq(
            &self.servers.amqp_url,
            &format!("{prefix}raw.publish"),
            self.rate,
            baseline_for,
        )
        .await?;
        let callers = 16;
        let raw_durable = raw::durable_referral_work(
            db,
            &self.servers.amqp_url,
            &format!("{prefix}raw.durable"),
            callers,
            baseline_for,
        )
        .await?;

        // The suite: a warm-up, the main run, then the higher rates.
        let mut next = 0u64;
        println!(
            "bench: warm-up at {}/s for {} s",
            self.rate, self.warm_up_secs
        );
        self.suite_at(
            &target.referrals,
            &bank,
            &arrivals,
            self.rate,
            self.warm_up_secs,
            &mut next,
        )
        .await?;
        println!(
            "bench: CreateReferral at {}/s for {} s",
            self.rate, self.seconds
        );
        let mut runs = vec![
            self.suite_at(
                &target.referrals,
                &bank,
                &arrivals,
                self.rate,
                self.seconds,
                &mut next,
            )
            .await?,
        ];
        for rate in &self.also_at {
            // Past the first rate the suite did not sustain, a higher one only
            // measures the backlog the last one left.
            if runs.last().is_some_and(|run| !run.sustained()) {
                break;
            }
            println!(
                "bench: CreateReferral at {rate}/s for {} s",
                self.step_seconds
            );
            runs.push(
                self.suite_at(
                    &target.referrals,
                    &bank,
                    &arrivals,
                    *rate,
                    self.step_seconds,
                    &mut next,
                )
                .await?,
            );
        }
        watching.cancel();
        for watcher in watchers {
            let _ = watcher.await;
        }
        let memory: Vec<(String, f64)> = target
            .processes
            .iter()
            .map(|(name, pid)| (name.clone(), resident_memory_mb(*pid)))
            .collect();

        let main = &runs[0];
        println!(
            "\n{:<46} {:>9} {:>9} {:>9} {:>10}",
            "at the main rate", "p50 ms", "p99 ms", "per s", "p99 ×raw"
        );
        let line = |name: &str, p50: f64, p99: f64, rate: f64, raw_p99: Option<f64>| {
            println!(
                "{name:<46} {p50:>9.2} {p99:>9.2} {rate:>9.0} {:>10}",
                raw_p99.map_or("-".to_owned(), |raw| format!("{:.2}", p99 / raw.max(0.001)))
            );
        };
        line(
            "raw: tonic bare unary RPC",
            raw_rpc.ms(0.5),
            raw_rpc.ms(0.99),
            raw_rpc.achieved_rate(),
            None,
        );
        line(
            "raw: PostgreSQL INSERT+commit, SELECT by key",
            raw_db.ms(0.5),
            raw_db.ms(0.99),
            raw_db.achieved_rate(),
            None,
        );
        line(
            "raw: RabbitMQ confirmed publish → consume",
            raw_broker.ms(0.5),
            raw_broker.ms(0.99),
            raw_broker.achieved_rate(),
            None,
        );
        line(
            "suite: CreateReferral (vs bare RPC)",
            main.rpc.ms(0.5),
            main.rpc.ms(0.99),
            main.rpc.achieved_rate(),
            Some(raw_rpc.ms(0.99)),
        );
        line(
            "suite: send → RM stream (vs publish→consume)",
            ms(&main.to_stream, 0.5),
            ms(&main.to_stream, 0.99),
            main.rpc.achieved_rate(),
            Some(raw_broker.ms(0.99)),
        );

        println!(
            "\n{:<8} {:>8} {:>8} {:>7} {:>5} {:>10} {:>10} {:>13} {:>13}  sustained",
            "rate",
            "offered",
            "answered",
            "errors",
            "lost",
            "achieved",
            "RPC p99",
            "to stream p50",
            "to stream p99"
        );
        for run in &runs {
            println!(
                "{:<8} {:>8} {:>8} {:>7} {:>5} {:>10.0} {:>10.2} {:>13.2} {:>13.2}  {}",
                run.rate,
                run.rpc.offered,
                run.rpc.completed,
                run.rpc.errors,
                run.lost,
                run.rpc.achieved_rate(),
                run.rpc.ms(0.99),
                ms(&run.to_stream, 0.5),
                ms(&run.to_stream, 0.99),
                if run.sustained() { "yes" } else { "NO" }
            );
        }
        let best = runs
            .iter()
            .filter(|run| run.sustained())
            .map(|run| run.rate)
            .max()
            .unwrap_or(0);
        let stream_ratio = ms(&main.to_stream, 0.99) / raw_broker.ms(0.99).max(0.001);
        println!(
            "\nraw durable work of a referral (4 inserts in one transaction + a confirmed publish, {callers} callers): {raw_durable:.0}/s"
        );
        let goals = [
            (
                format!(
                    "{}/s: send → stream p99 within 5× raw publish → consume ({stream_ratio:.1}×)",
                    self.rate
                ),
                main.sustained() && stream_ratio <= 5.0,
            ),
            (
                format!(
                    "highest sustained rate {best}/s ≥ 1/4 of the raw durable rate ({:.0}/s)",
                    raw_durable / 4.0
                ),
                best as f64 >= raw_durable / 4.0,
            ),
            (
                format!("highest sustained rate {best}/s ≥ 1,500/s"),
                best >= 1500,
            ),
        ];
        for (goal, met) in &goals {
            println!("  [{}] {goal}", if *met { "x" } else { " " });
        }
        println!(
            "{}; {} phones. Resident memory after the runs:",
            target.mode,
            bank.branches * bank.rms_per_branch
        );
        for (name, mb) in &memory {
            println!("  {name:<28} {mb:>6.0} MB");
        }

        let figures = serde_json::json!({
            "mode": target.mode,
            "branches": self.branches,
            "rms_watching": bank.branches * bank.rms_per_branch,
            "raw": {
                "tonic_rpc": { "rate": raw_rpc.rate, "p50_ms": raw_rpc.ms(0.5), "p99_ms": raw_rpc.ms(0.99) },
                "postgres_insert_select": { "rate": raw_db.rate, "p50_ms": raw_db.ms(0.5), "p99_ms": raw_db.ms(0.99) },
                "rabbitmq_publish_consume": { "rate": raw_broker.rate, "p50_ms": raw_broker.ms(0.5), "p99_ms": raw_broker.ms(0.99) },
                "durable_referral_work_per_s": raw_durable,
                "durable_callers": callers,
            },
            "suite": runs.iter().map(SuiteRun::json).collect::<Vec<_>>(),
            "highest_sustained_per_s": best,
            "stream_p99_over_raw_broker_p99": stream_ratio,
            "resident_memory_mb": memory
                .iter()
                .map(|(name, mb)| (name.clone(), serde_json::json!(mb)))
                .collect::<serde_json::Map<_, _>>(),
            "goals": goals.iter().map(|(goal, met)| serde_json::json!({"goal": goal, "met": met})).collect::<Vec<_>>(),
        });
        let scenario = if self.distributed {
            "referrals-distributed"
        } else {
            "referrals"
        };
        results::save(scenario, db, figures).await?;
        Ok(())
    }

    /// The suite at `rate` for `seconds`: CreateReferral open-loop, then each
    /// answered referral's item looked for on its RM's stream.
    async fn suite_at(
        &self,
        replicas: &[Channel],
        bank: &Arc<Bank>,
        arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
        rate: u64,
        seconds: u64,
        next: &mut u64,
    ) -> anyhow::Result<SuiteRun> {
        let first = *next;
        *next += rate * seconds;
        let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let rpc = raw::open_loop(rate, Duration::from_secs(seconds), |n, due| {
            let replica = &replicas[usize::try_from(n).unwrap_or(0) % replicas.len().max(1)];
            let mut referrals = ReferralServiceClient::new(replica.clone());
            let (teller, request) = bank.referral(first + n);
            let answered = answered.clone();
            async move {
                let response = referrals
                    .create_referral(authorized(&teller, request))
                    .await
                    .inspect_err(|status| eprintln!("  {status:?}"))
                    .ok()?;
                let done = Instant::now();
                let referral = response.into_inner().referral?;
                if let Ok(mut answered) = answered.lock() {
                    answered.push((referral.referral_id, due));
                }
                Some(done)
            }
        })
        .await?;
        // Let the last items reach their phones.
        let answered = std::mem::take(
            &mut *answered
                .lock()
                .map_err(|_| anyhow::anyhow!("answers lock"))?,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let all_there = arrivals
                .lock()
                .map(|arrived| answered.iter().all(|(id, _)| arrived.contains_key(id)))
                .unwrap_or(false);
            if all_there || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut to_stream = histogram()?;
        let mut lost = 0;
        let arrived = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("arrivals lock"))?;
        for (referral_id, due) in &answered {
            match arrived.get(referral_id) {
                Some(at) => to_stream.saturating_record(micros(at.saturating_duration_since(*due))),
                None => lost += 1,
            }
        }
        Ok(SuiteRun {
            rate,
            rpc,
            to_stream,
            lost,
        })
    }
}

/// Every RM of the bank watching their queue, each on a connection of its own.
async fn watch_every_queue(
    addrs: &[std::net::SocketAddr],
    keys: &Keys,
    bank: &Bank,
    arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
    watching: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut watchers = Vec::new();
    for b in 0..bank.branches {
        for n in 0..bank.rms_per_branch {
            let branch = branch_id(b);
            let token = keys.token(&format!("{branch}-RM-{n}"), Role::Rm, &branch)?;
            let addr = addrs[(b * bank.rms_per_branch + n) % addrs.len().max(1)];
            watchers.push(
                watch_queue(addr, &token, arrivals, watching, |item| {
                    Some(item.source_id)
                })
                .await?,
            );
        }
    }
    Ok(watchers)
}

/// One RM's phone: a connection of its own to `addr` and a WatchWorkItems
/// stream, noting when each item first arrives, under the key `key_of` gives it
/// (items it gives none are not noted), until `watching` is cancelled.
pub(crate) async fn watch_queue(
    addr: std::net::SocketAddr,
    token: &str,
    arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
    watching: &CancellationToken,
    key_of: fn(pb::WorkItem) -> Option<String>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let phone = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut stream = ReferralServiceClient::new(phone)
        .watch_work_items(authorized(token, pb::WatchWorkItemsRequest::default()))
        .await?
        .into_inner();
    let (arrivals, watching) = (arrivals.clone(), watching.clone());
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = watching.cancelled() => return,
                message = stream.next() => match message {
                    Some(Ok(message)) => {
                        if let Some(key) = message.work_item.and_then(key_of)
                            && let Ok(mut arrivals) = arrivals.lock()
                        {
                            arrivals.entry(key).or_insert_with(Instant::now);
                        }
                    }
                    _ => return,
                },
            }
        }
    }))
}

/// A process's resident memory (VmRSS), in MB.
pub(crate) fn resident_memory_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
