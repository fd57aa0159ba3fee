//! `make chaos`: the distributed mode as it will be deployed — a `crm serve` process
//! per service, referrals twice, over the real PostgreSQL and RabbitMQ on
//! 127.0.0.1 — takes a steady teller load (and core banking opening clients)
//! while, in turn, every broker connection is cut, the broker is stopped and
//! started, a referrals replica is killed with SIGKILL, the clients service is
//! killed, and PostgreSQL restarts. Then it checks, against every key the load
//! sent, that nothing was lost or made twice, and reports what each fault cost.
//!
//! It restarts the machine's own RabbitMQ and PostgreSQL: run it alone (`make
//! chaos` runs after `make test` in CI), never beside other work on those servers.

mod checks;

mod coverage;
mod faults;
mod load;
mod report;
mod streams;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_proto::v1::directory_service_client::DirectoryServiceClient;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::load::{Generator, Teller};
use crm_chaos::cluster::{self, Cluster};

#[derive(Parser, Debug)]
#[command(
    about = "The distributed mode under fire: a teller load through broker, process and database faults"
)]
struct Args {
    /// Referrals the tellers make.
    #[arg(long, default_value_t = 10_000)]
    referrals: u64,
    /// Referrals per second, steady.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Seconds of load before the first fault.
    #[arg(long, default_value_t = 10)]
    first_fault_after: u64,
    /// Seconds from one fault's start to the next's.
    #[arg(long, default_value_t = 22)]
    fault_spacing: u64,
    /// Branches, each with a manager, four RMs and two tellers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    branches: u32,
    #[arg(
        long,
        env = "CRM_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    #[arg(
        long,
        env = "CRM_TEST_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// The `crm` binary; by default the one beside this program.
    #[arg(long)]
    crm: Option<PathBuf>,
    /// Where each process's log and the report go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
}

/// The longest a run may take, setup and checks included.
const RUN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Mints this run's tokens.
struct Tokens(crm_auth::JwtKeys);

impl Tokens {
    fn mint(&self, staff: &str, role: Role, branch: &str) -> anyhow::Result<String> {
        Ok(self.0.mint(
            &StaffId::parse(staff).map_err(|e| anyhow::anyhow!("{staff}: {e}"))?,
            role,
            &BranchId::parse(branch).map_err(|e| anyhow::anyhow!("{branch}: {e}"))?,
            chrono::Duration::minutes(60),
        )?)
    }
}

fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn branch_id(n: u32) -> String {
    format!("B-{:03}", 100 + n)
}

/// The bank of the run: branches, their people, routing's copy of them.
async fn seed(cluster: &Cluster, tokens: &Tokens, branches: u32) -> anyhow::Result<()> {
    let system = tokens.mint("SYS-CHAOS", Role::System, "HQ-001")?;
    let mut directory = DirectoryServiceClient::new(cluster.channel("clients")?);
    for n in 1..=branches {
        let branch = branch_id(n);
        directory
            .upsert_branch(authorized(
                &system,
                pb::UpsertBranchRequest {
                    branch: Some(pb::Branch {
                        branch_id: branch.clone(),
                        name: format!("Branch {branch}"),
                        city: "Shanghai".into(),
                        time_zone: String::new(),
                    }),
                },
            ))
            .await?;
        let mut staff = vec![(format!("{branch}-M"), pb::StaffRole::BranchManager)];
        staff.extend((1..=4).map(|r| (format!("{branch}-RM-{r}"), pb::StaffRole::Rm)));
        staff.extend((1..=2).map(|t| (format!("{branch}-T-{t}"), pb::StaffRole::Teller)));
        for (staff_id, role) in staff {
            directory
                .upsert_staff(authorized(
                    &system,
                    pb::UpsertStaffRequest {
                        staff: Some(pb::Staff {
                            staff_id,
                            name: "Chaos staff".into(),
                            role: role as i32,
                            branch_id: branch.clone(),
                            active: true,
                            capacity: 1_000,
                            out_of_office_until: None,
                        }),
                    },
                ))
                .await?;
        }
    }
    // Routing has heard of everyone before the load starts.
    let referrals = cluster.schema("referrals").await?;
    let want = i64::from(branches) * 5;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = sea_orm::ConnectionTrait::query_one_raw(
            &referrals,
            sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT COUNT(*) FROM routing_staff WHERE role IN ('rm', 'branch_manager')"
                    .to_owned(),
            ),
        )
        .await?;
        let have = rows
            .map(|row| row.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0);
        if have >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("routing knows {have} of {want} staff after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    referrals.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let crm = match &args.crm {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's folder")?
            .join("crm"),
    };
    if !crm.exists() {
        bail!("no crm binary at {} (cargo build -p crm)", crm.display());
    }
    // Every fault must strike while tellers are still referring.
    let faults_end = args.first_fault_after + args.fault_spacing * faults::SCHEDULE.len() as u64;
    let load_lasts = args.referrals / u64::from(args.rate.max(1));
    if load_lasts < faults_end {
        bail!(
            "{} referrals at {}/s last {load_lasts} s, but the faults run until t={faults_end} s: \
             more referrals, a lower rate, or faults closer together",
            args.referrals,
            args.rate
        );
    }
    let run_started = Instant::now();
    let cluster =
        Cluster::create(crm, args.out.clone(), &args.database_url, &args.amqp_url).await?;
    println!(
        "chaos: database {}, queue prefix {}, logs in {}",
        cluster.database_name,
        cluster.queue_prefix,
        cluster.log_dir().display()
    );
    let cluster = Arc::new(Mutex::new(cluster));
    // However the services fare, the run ends: CI has a budget.
    let outcome = tokio::time::timeout(RUN_LIMIT, run(&args, &cluster))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the run took longer than {RUN_LIMIT:?}")));
    let torn_down = match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.into_inner().tear_down().await,
        Err(_) => Err(anyhow::anyhow!("a task still holds the cluster")),
    };
    let passed = match outcome {
        Ok(passed) => passed,
        Err(error) => {
            eprintln!("chaos run failed: {error:#}");
            false
        }
    };
    torn_down.context("tearing the run down")?;
    println!("chaos: {:.0} s in all", run_started.elapsed().as_secs_f64());
    if !passed {
        bail!(
            "chaos checks failed (see above and {})",
            args.out.join("report.md").display()
        );
    }
    Ok(())
}

/// How long the system may take to settle after the load before the checks run.
const SETTLE_AT_MOST: Duration = Duration::from_secs(300);

/// Starts, loads, breaks, settles and checks; whether every check passed.
async fn run(args: &Args, shared: &Arc<Mutex<Cluster>>) -> anyhow::Result<bool> {
    let mut cluster = shared.lock().await;
    cluster.start_all().await?;
    let keys = crm_auth::JwtKeys::hs256(&secrecy::SecretString::from(cluster::JWT_SECRET))?;
    let tokens = Tokens(keys);
    seed(&cluster, &tokens, args.branches).await?;

    let replicas = vec![
        cluster.channel("referrals-a")?,
        cluster.channel("referrals-b")?,
    ];
    let mut tellers = Vec::new();
    let mut rm_tokens = Vec::new();
    let mut rms = Vec::new();
    for n in 1..=args.branches {
        let branch = branch_id(n);
        for t in 1..=2 {
            let staff_id = format!("{branch}-T-{t}");
            tellers.push(Teller {
                token: tokens.mint(&staff_id, Role::Teller, &branch)?,
                staff_id,
            });
        }
        for r in 1..=4 {
            let staff_id = format!("{branch}-RM-{r}");
            rm_tokens.push(tokens.mint(&staff_id, Role::Rm, &branch)?);
            rms.push((staff_id, branch.clone()));
        }
    }
    let stop_streams = CancellationToken::new();
    let (deliveries, mut watchers) = streams::watch_all(rm_tokens, &replicas, &stop_streams);

    println!(
        "chaos: {} referrals at {}/s from {} tellers, {} RMs watching, faults from t={}s every {}s",
        args.referrals,
        args.rate,
        tellers.len(),
        rms.len(),
        args.first_fault_after,
        args.fault_spacing
    );
    let started = Instant::now();
    let generator = Arc::new(Generator {
        replicas: replicas.clone(),
        tellers,
        started,
    });
    let clients_channel = cluster.channel("clients")?;
    drop(cluster);
    let stop_coverage = CancellationToken::new();
    let coverage = tokio::spawn(coverage::run(
        clients_channel,
        tokens.mint("SYS-CORE", Role::System, "HQ-001")?,
        rms.clone(),
        Duration::from_millis(250),
        stop_coverage.clone(),
    ));
    let schedule = tokio::spawn(faults::run_schedule(
        shared.clone(),
        started,
        Duration::from_secs(args.first_fault_after),
        Duration::from_secs(args.fault_spacing),
    ));
    let mut calls = load::run(generator.clone(), args.referrals, args.rate).await;
    let load_took = started.elapsed();
    let windows = schedule.await??;
    let cluster = shared.lock().await;
    stop_coverage.cancel();
    let coverage = coverage.await?;

    // As the faults left them, for the report; then the teller app sends again
    // what it could not send.
    let as_the_faults_left_them = calls.clone();
    let mut sent_again = 0;
    for (n, call) in calls.iter_mut().enumerate() {
        if call.referral_id.is_none() && call.final_error.is_none() {
            sent_again += 1;
            generator.retry(call, u64::try_from(n)?).await;
        }
    }

    // Settled: every outbox empty, every queue drained, every item version on a
    // stream (or time up). The events service takes every referral's news for its
    // timelines, so its queue drains for a while after the load.
    let settle_started = Instant::now();
    let referrals = cluster.schema("referrals").await?;
    loop {
        let unsent = checks::unsent_outbox_rows(&cluster).await?;
        let queued = cluster.undelivered_messages().await?;
        let versions = checks::work_item_versions(&referrals).await?;
        let undelivered = checks::undelivered(&versions, &*deliveries.lock().await);
        if unsent == 0 && queued == 0 && undelivered == 0 {
            break;
        }
        if settle_started.elapsed() > SETTLE_AT_MOST {
            // Say what did not settle, for whoever reads the report.
            let depths = cluster.queue_depths().await?;
            println!(
                "chaos: not settled after {} s: {unsent} outbox rows unsent, {undelivered} item versions not on a stream, queues {depths:?}",
                SETTLE_AT_MOST.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    referrals.close().await?;
    let settled_in = settle_started.elapsed();
    stop_streams.cancel();
    while watchers.join_next().await.is_some() {}

    let deliveries = deliveries.lock().await;
    let checks = checks::run(&cluster, &calls, &deliveries, &coverage.covered).await?;
    let (scrapes, unscraped) = cluster.scrape_all().await;
    let report = report::render(&report::Run {
        args_referrals: args.referrals,
        rate: args.rate,
        load_took,
        settled_in,
        sent_again,
        calls: &as_the_faults_left_them,
        windows: &windows,
        coverage: &coverage,
        checks: &checks,
        scrapes: &scrapes,
        unscraped: &unscraped,
    });
    println!("{report}");
    std::fs::write(cluster.log_dir().join("report.md"), &report)?;
    Ok(checks.iter().all(|check| check.passed))
}
