//! The client book at scale: with N clients (1,000,000 by default) in
//! PostgreSQL, GetClient and a SearchClients page by RM and by phone at 64
//! concurrent callers, each read authenticated, scoped and audited (its line
//! committed before the answer). Measured in the same run, with the same callers:
//!
//! - a bare RPC (gRPC health's Check on the same server: no auth, no database);
//! - PostgreSQL alone doing a GetClient's durable work the plain way: a
//!   primary-key SELECT of the client's row and a one-row INSERT committed on
//!   its own;
//! - GetBranch (one authenticated RPC reading a small table).
//!
//! Goals (issue 14): GetClient ≥ 10,000 calls/s with p99 < 10 ms; SearchClients
//! p99 < 20 ms. Figures also as JSON under bench/results.
//!
//! The bank: 100 branches `B-000`..`B-099`, 20 RMs each. Client `i` is
//! `C000000000`+i at branch `i % 100`, primary RM `(i / 100) % 20` of that branch
//! (about 500 clients per RM), every tenth also covered by the next RM as wealth
//! manager, phone `13` + i (9 digits), national id `1101011980` + i (8 digits),
//! both sealed with the benchmark's own key as the service would seal them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use crm_clients::store::{branch, client};
use crm_domain::pii::Pii;
use crm_domain::tier::TierPolicy;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_proto::v1::client_service_client::ClientServiceClient;
use crm_proto::v1::directory_service_client::DirectoryServiceClient;
use crm_store::{Db, Vault};
use rand::Rng;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, PaginatorTrait};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::load::{self, LoadShape};

const BRANCHES: u64 = 100;
const RMS_PER_BRANCH: u64 = 20;
const BATCH: usize = 2000;
/// The benchmark's data is synthetic; its sealing key is fixed so a seeded schema
/// can be reused across runs. Never a production key.
const BENCH_PII_KEY: &str = "YmVuY2gtb25seS1rZXktbm90LWZvci1wcm9kLTAxMjM=";
const BENCH_JWT_SECRET: &str = "bench-only-jwt-secret-0123456789";

#[derive(clap::Args, Clone)]
pub struct SeedArgs {
    #[arg(
        long,
        env = "CRM_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Reused across runs when it already holds `--clients` clients.
    #[arg(long, default_value = "bench_clients")]
    pub schema: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub clients: u64,
}

#[derive(clap::Args)]
pub struct ClientsBench {
    #[command(flatten)]
    seed: SeedArgs,
    #[arg(long, default_value_t = 64)]
    callers: usize,
    #[arg(long, default_value_t = 3)]
    warm_up_secs: u64,
    #[arg(long, default_value_t = 15)]
    measure_secs: u64,
}

/// GetClient's goal: calls a second, and p99 in milliseconds.
const GET_CLIENT_RATE_GOAL: f64 = 10_000.0;
const GET_CLIENT_P99_GOAL_MS: f64 = 10.0;
/// SearchClients' goal: p99 in milliseconds.
const SEARCH_P99_GOAL_MS: f64 = 20.0;

fn vault() -> anyhow::Result<Vault> {
    Ok(Vault::from_base64(&SecretString::from(BENCH_PII_KEY))?)
}

fn branch_of(i: u64) -> String {
    format!("B-{:03}", i % BRANCHES)
}

fn rm_of(i: u64) -> String {
    format!("{}-RM-{:02}", branch_of(i), (i / BRANCHES) % RMS_PER_BRANCH)
}

fn phone_of(i: u64) -> String {
    format!("13{i:09}")
}

pub async fn open(args: &SeedArgs) -> anyhow::Result<Db> {
    let db = crm_store::connect(&args.database_url, Some(&args.schema))
        .await
        .context("PostgreSQL for the benchmark (is it running? `make services`)")?;
    crm_runtime::migrate(&db, &[&crm_clients::Module]).await?;
    Ok(db)
}

fn client_row(
    i: u64,
    vault: &Vault,
    policy: &TierPolicy,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<client::ActiveModel> {
    let national_id = Pii::new(format!("1101011980{i:08}"));
    let phone = Pii::new(phone_of(i));
    // A spread of averages over every tier, the same for the same client.
    let aum_minor = i64::try_from((i.wrapping_mul(2_654_435_761) % 1_500_000) * 10_000)?;
    let wealth_manager = i.is_multiple_of(10).then(|| {
        format!(
            "{}-RM-{:02}",
            branch_of(i),
            ((i / BRANCHES) + 1) % RMS_PER_BRANCH
        )
    });
    Ok(client::ActiveModel {
        client_id: Set(format!("C{i:09}")),
        full_name: Set(format!("Client {i}")),
        national_id: Set(vault.seal(&national_id)?),
        national_id_hash: Set(vault.lookup_hash(&national_id)),
        phone: Set(vault.seal(&phone)?),
        phone_hash: Set(vault.lookup_hash(&phone)),
        home_branch_id: Set(branch_of(i)),
        kind: Set(crm_domain::client::ClientKind::Individual),
        segments: Set("[]".into()),
        do_not_contact: Set(false),
        marketing_consent: Set(true),
        tier: Set(policy.next_tier(None, aum_minor)),
        aum_minor_units: Set(aum_minor),
        aum_currency: Set("CNY".into()),
        aum_feed_updated_at: Set(None),
        payroll_employer_id: Set(None),
        primary_rm_id: Set(Some(rm_of(i))),
        wealth_manager_id: Set(wealth_manager),
        private_banker_id: Set(None),
        last_contact_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
}

/// The benchmark's schema holding `args.clients` clients: reused when it already
/// does, else made again from nothing and filled.
pub async fn open_seeded(args: &SeedArgs) -> anyhow::Result<Db> {
    let db = open(args).await?;
    let have = client::Entity::find().count(&db).await?;
    if have == args.clients {
        println!("seed: {} clients already in schema {}", have, args.schema);
        return Ok(db);
    }
    println!(
        "seed: schema {} holds {have} clients; writing {}",
        args.schema, args.clients
    );
    let fresh = have == 0 && branch::Entity::find().count(&db).await? == 0;
    let db = if fresh {
        db
    } else {
        // A partial or different-sized seed starts over. The audit trail refuses
        // deletes and TRUNCATE alike, so the schema goes, and comes back empty.
        db.close().await?;
        crm_store::db::drop_schema(&args.database_url, &args.schema).await?;
        open(args).await?
    };
    seed(&db, args).await?;
    Ok(db)
}

/// Fills an empty schema with `args.clients` clients.
async fn seed(db: &Db, args: &SeedArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    for b in 0..BRANCHES {
        branch::Entity::insert(branch::ActiveModel {
            branch_id: Set(format!("B-{b:03}")),
            name: Set(format!("Branch {b}")),
            city: Set("Shanghai".into()),
            time_zone: Set("Asia/Shanghai".into()),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(db)
        .await?;
    }
    let started = Instant::now();
    let vault = vault()?;
    let policy = TierPolicy::default();
    let mut next = 0;
    while next < args.clients {
        let end = (next + BATCH as u64).min(args.clients);
        let rows = (next..end)
            .map(|i| client_row(i, &vault, &policy, now))
            .collect::<anyhow::Result<Vec<_>>>()?;
        client::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
        next = end;
        if next.is_multiple_of(100_000) {
            println!(
                "seed: {next} clients, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    db.execute_unprepared("ANALYZE").await?;
    println!(
        "seed: {} clients in {:.0} s",
        args.clients,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A request as `staff` (role, branch) would send it.
fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Tokens for every RM and every branch's teller, minted once.
struct Tokens {
    keys: crm_auth::JwtKeys,
}

impl Tokens {
    fn mint(&self, staff: &str, role: Role, branch: &str) -> anyhow::Result<String> {
        Ok(self.keys.mint(
            &StaffId::parse(staff).map_err(anyhow::Error::msg)?,
            role,
            &BranchId::parse(branch).map_err(anyhow::Error::msg)?,
            chrono::Duration::hours(2),
        )?)
    }
}

impl ClientsBench {
    pub async fn run(self) -> anyhow::Result<()> {
        open_seeded(&self.seed).await?.close().await?;

        let mut settings = crm_runtime::Settings::for_local_app(
            self.seed.database_url.clone(),
            Some(self.seed.schema.clone()),
            None,
            String::new(),
            BENCH_JWT_SECRET.to_owned(),
        )?;
        settings.pii_key = Some(secrecy::SecretString::from(BENCH_PII_KEY));
        let shutdown = CancellationToken::new();
        let app = crm_runtime::App::build(
            &settings,
            &crm_runtime::ModuleSettings::defaults(crm::MODULES)?,
            crm::MODULES,
            shutdown.clone(),
        )
        .await?;
        let addr = app.local_addr()?;
        let server = tokio::spawn(app.run());

        let keys = crm_auth::JwtKeys::hs256(&SecretString::from(BENCH_JWT_SECRET))?;
        let tokens = Tokens { keys };
        let mut rm_tokens = Vec::new();
        for i in 0..BRANCHES * RMS_PER_BRANCH {
            // Client i*BRANCHES.. maps back to RM (i % 20) of branch (i / 20).
            let branch = format!("B-{:03}", i / RMS_PER_BRANCH);
            let rm = format!("{branch}-RM-{:02}", i % RMS_PER_BRANCH);
            rm_tokens.push(tokens.mint(&rm, Role::Rm, &branch)?);
        }
        let teller_tokens = (0..BRANCHES)
            .map(|b| {
                let branch = format!("B-{b:03}");
                tokens.mint(&format!("{branch}-T-1"), Role::Teller, &branch)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rm_token_of = |i: u64| {
            let branch = i % BRANCHES;
            let rm = (i / BRANCHES) % RMS_PER_BRANCH;
            usize::try_from(branch * RMS_PER_BRANCH + rm).unwrap_or(0)
        };
        let rm_tokens = Arc::new(rm_tokens);
        let teller_tokens = Arc::new(teller_tokens);

        let mut channels = Vec::new();
        for _ in 0..self.callers {
            channels.push(
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?,
            );
        }
        let channels = Arc::new(channels);
        let shape = LoadShape {
            callers: self.callers,
            warm_up: Duration::from_secs(self.warm_up_secs),
            measure: Duration::from_secs(self.measure_secs),
        };
        let clients = self.seed.clients;
        let random_client = move || rand::rng().random_range(0..clients);
        println!(
            "bench: {} clients, {} callers, {} s per scenario after {} s warm-up",
            clients, self.callers, self.measure_secs, self.warm_up_secs
        );

        let bare_rpc = {
            let channels = channels.clone();
            load::run("raw: bare RPC (health Check)", shape, move |caller, _| {
                let mut health =
                    tonic_health::pb::health_client::HealthClient::new(channels[caller].clone());
                async move {
                    health
                        .check(tonic_health::pb::HealthCheckRequest::default())
                        .await
                        .map(drop)
                }
            })
            .await?
        };
        let raw_postgres = raw_select_and_insert(&self.seed, shape, clients).await?;
        let get_branch = {
            let (channels, rm_tokens) = (channels.clone(), rm_tokens.clone());
            load::run("GetBranch", shape, move |caller, _| {
                let mut directory = DirectoryServiceClient::new(channels[caller].clone());
                let b = random_client() % BRANCHES;
                let request = authorized(
                    &rm_tokens[usize::try_from(b * RMS_PER_BRANCH).unwrap_or(0)],
                    pb::GetBranchRequest {
                        branch_id: format!("B-{b:03}"),
                    },
                );
                async move { directory.get_branch(request).await.map(drop) }
            })
            .await?
        };
        let get_client = {
            let (channels, rm_tokens) = (channels.clone(), rm_tokens.clone());
            load::run("GetClient (RM, own client)", shape, move |caller, _| {
                let mut book = ClientServiceClient::new(channels[caller].clone());
                let i = random_client();
                let request = authorized(
                    &rm_tokens[rm_token_of(i)],
                    pb::GetClientRequest {
                        client_id: format!("C{i:09}"),
                    },
                );
                async move { book.get_client(request).await.map(drop) }
            })
            .await?
        };
        let search_by_rm = {
            let (channels, rm_tokens) = (channels.clone(), rm_tokens.clone());
            load::run(
                "SearchClients rm_id (page of 50)",
                shape,
                move |caller, _| {
                    let mut book = ClientServiceClient::new(channels[caller].clone());
                    let i = random_client();
                    let request = authorized(
                        &rm_tokens[rm_token_of(i)],
                        pb::SearchClientsRequest {
                            rm_id: rm_of(i),
                            page_size: 50,
                            ..Default::default()
                        },
                    );
                    async move {
                        let page = book.search_clients(request).await?.into_inner();
                        if page.clients.len() == 50 {
                            Ok(())
                        } else {
                            Err(tonic::Status::internal(format!(
                                "page of {}",
                                page.clients.len()
                            )))
                        }
                    }
                },
            )
            .await?
        };
        let search_by_phone = {
            let (channels, teller_tokens) = (channels.clone(), teller_tokens.clone());
            load::run("SearchClients phone (teller)", shape, move |caller, _| {
                let mut book = ClientServiceClient::new(channels[caller].clone());
                let i = random_client();
                let branch = usize::try_from(i % BRANCHES).unwrap_or(0);
                let request = authorized(
                    &teller_tokens[branch],
                    pb::SearchClientsRequest {
                        phone: phone_of(i),
                        ..Default::default()
                    },
                );
                async move {
                    let page = book.search_clients(request).await?.into_inner();
                    match page.clients.first() {
                        Some(found) if found.client_id == format!("C{i:09}") => Ok(()),
                        _ => Err(tonic::Status::internal("phone search missed its client")),
                    }
                }
            })
            .await?
        };
        println!(
            "{}",
            load::report(
                &bare_rpc,
                &[
                    &raw_postgres,
                    &get_branch,
                    &get_client,
                    &search_by_rm,
                    &search_by_phone
                ]
            )
        );
        let verdicts = [
            verdict(
                &get_client,
                get_client.throughput() >= GET_CLIENT_RATE_GOAL
                    && get_client.p99_ms() < GET_CLIENT_P99_GOAL_MS,
                "≥ 10,000 calls/s, p99 < 10 ms",
            ),
            verdict(
                &search_by_rm,
                search_by_rm.p99_ms() < SEARCH_P99_GOAL_MS,
                "p99 < 20 ms",
            ),
            verdict(
                &search_by_phone,
                search_by_phone.p99_ms() < SEARCH_P99_GOAL_MS,
                "p99 < 20 ms",
            ),
        ];
        for (line, _) in &verdicts {
            println!("{line}");
        }
        println!(
            "GetClient against PostgreSQL alone doing its SELECT + INSERT: {:.2}× the calls/s",
            get_client.throughput() / raw_postgres.throughput().max(f64::EPSILON)
        );
        let db = open(&self.seed).await?;
        let figures = serde_json::json!({
            "clients": clients,
            "callers": self.callers,
            "measure_secs": self.measure_secs,
            "baselines": {
                "bare_rpc": bare_rpc.figures(None),
                "postgres_select_insert": raw_postgres.figures(None),
            },
            "suite": {
                "get_branch": get_branch.figures(Some(&bare_rpc)),
                "get_client": get_client.figures(Some(&bare_rpc)),
                "search_by_rm": search_by_rm.figures(Some(&bare_rpc)),
                "search_by_phone": search_by_phone.figures(Some(&bare_rpc)),
            },
            "get_client_calls_vs_postgres_select_insert":
                get_client.throughput() / raw_postgres.throughput().max(f64::EPSILON),
            "goals": verdicts.iter().map(|(line, met)| serde_json::json!({"goal": line, "met": met})).collect::<Vec<_>>(),
        });
        crate::results::save("clients", &db, figures).await?;
        db.close().await?;
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        Ok(())
    }
}

/// A goal's line for the report, and whether it was met.
fn verdict(measured: &load::Measured, met: bool, goal: &str) -> (String, bool) {
    let word = if met && measured.errors == 0 {
        "meets"
    } else {
        "MISSES"
    };
    (
        format!(
            "{}: {:.0} calls/s, p99 {:.2} ms, {} errors — {word} the goal ({goal}, no errors)",
            measured.name,
            measured.throughput(),
            measured.p99_ms(),
            measured.errors
        ),
        met && measured.errors == 0,
    )
}

/// PostgreSQL alone doing what a GetClient does durably, the plain way: the
/// client's row by primary key, then a one-row INSERT committed on its own, from
/// the same number of callers over a pool of the service's size.
async fn raw_select_and_insert(
    seed: &SeedArgs,
    shape: LoadShape,
    clients: u64,
) -> anyhow::Result<load::Measured> {
    let db = crm_store::connect(&seed.database_url, Some(&seed.schema)).await?;
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS raw_reads (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL);
         TRUNCATE raw_reads",
    )
    .await?;
    let measured = load::run("raw: PG SELECT + INSERT", shape, move |_, n| {
        let db = db.clone();
        let i = rand::rng().random_range(0..clients);
        async move {
            let failed = |error: sea_orm::DbErr| tonic::Status::internal(error.to_string());
            db.query_one_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT * FROM clients WHERE client_id = $1",
                [format!("C{i:09}").into()],
            ))
            .await
            .map_err(failed)?
            .ok_or_else(|| tonic::Status::internal("seeded client missing"))?;
            db.execute_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                "INSERT INTO raw_reads (body) VALUES ($1)",
                [format!("an audit-line-sized row {n:0>120}").into()],
            ))
            .await
            .map_err(failed)?;
            Ok(())
        }
    })
    .await?;
    Ok(measured)
}
