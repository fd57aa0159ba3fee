//! `crm`: the whole suite in one binary.
//!
//! `crm serve` mounts every service on one port; `crm demo` seeds a small bank and
//! plays a teller's referral through to an RM's phone; `crm token` mints a
//! development token; `crm migrate` brings the database schema up to date.

mod demo;

use clap::{Parser, Subcommand};
use crm_domain::{BranchId, Role, StaffId};
use crm_store::migrator::Schema;
use secrecy::SecretString;

#[derive(Parser)]
#[command(
    name = "crm",
    version,
    about = "RM CRM suite: clients, referrals and events for relationship managers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every service on one address.
    Serve {
        #[command(flatten)]
        settings: crm_runtime::Settings,
    },
    /// Seed a small bank in a scratch database and play a referral end to end.
    Demo {
        /// Clients to seed.
        #[arg(long, default_value_t = 300)]
        clients: u32,
    },
    /// Print a token signed with CRM_JWT_SECRET.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        branch: String,
        /// Lifetime in minutes.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: i64,
        #[arg(long, env = "CRM_JWT_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Show or replay messages in the dead-letter queue (RabbitMQ).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
        #[command(flatten)]
        settings: crm_runtime::Settings,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        settings: crm_runtime::Settings,
    },
    /// Scheduled jobs (run them from cron or a scheduler; each is safe to run twice
    /// or concurrently).
    Jobs {
        #[command(subcommand)]
        job: Job,
        #[command(flatten)]
        settings: crm_runtime::Settings,
    },
}

#[derive(Subcommand)]
enum Job {
    /// Escalate referrals past their acceptance deadline: the branch manager is
    /// told at the first breach, the referral moves down the routing chain at the
    /// second. Open referrals unchanged for CRM_REFERRAL_EXPIRE_DAYS expire. The
    /// referrals service's relay publishes what it writes.
    ReferralSla {
        /// Judge deadlines as of this time (RFC 3339) instead of now: replays, drills.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Send every branch, staff member and active teller pair again, so the
    /// referrals service rebuilds its copies (after a restore, or to fill a copy
    /// added in an upgrade, such as branch time zones). Run it against the clients
    /// service's database; the clients service's relay publishes what it writes.
    RepublishDirectory,
    /// Set every RM's count of open referrals (what routing balances on) from the
    /// referrals themselves: after restoring the referrals database. Run it with
    /// the referrals service stopped.
    RecountReferralLoad,
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Print the oldest dead-lettered messages; they stay in the queue.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Publish dead-lettered messages again under their original routing key.
    Replay {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { settings } => serve(settings).await,
        Command::Demo { clients } => demo::run(clients).await,
        Command::Token {
            sub,
            role,
            branch,
            ttl_minutes,
            secret,
        } => {
            let keys = crm_auth::JwtKeys::hs256(&SecretString::from(secret))?;
            let token = keys.mint(
                &StaffId::parse(&sub).map_err(|e| anyhow::anyhow!("--sub {e}"))?,
                role,
                &BranchId::parse(&branch).map_err(|e| anyhow::anyhow!("--branch {e}"))?,
                chrono::Duration::minutes(ttl_minutes),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::DeadLetters { action, settings } => dead_letters(action, &settings).await,
        Command::Jobs {
            job: Job::ReferralSla { now },
            settings,
        } => {
            let db = open_database(&settings).await?;
            let job = crm_referrals::SlaJob {
                db,
                sla: settings.referral_sla()?,
                calendar: settings.business_calendar(),
                expire_after: chrono::Duration::days(settings.referral_expire_days.into()),
            };
            let report = job.run(now.unwrap_or_else(chrono::Utc::now)).await?;
            println!(
                "referral SLA: {} escalated to their branch manager, {} reassigned, {} expired",
                report.escalated, report.reassigned, report.expired
            );
            Ok(())
        }
        Command::Jobs {
            job: Job::RepublishDirectory,
            settings,
        } => {
            let db = open_database(&settings).await?;
            let sent = crm_clients::republish_directory(&db).await?;
            println!(
                "directory: {} branches, {} staff, {} teller pairs queued for publishing",
                sent.branches, sent.staff, sent.pairs
            );
            Ok(())
        }
        Command::Jobs {
            job: Job::RecountReferralLoad,
            settings,
        } => {
            let db = open_database(&settings).await?;
            let staff = crm_store::referrals::recount_open_referrals(&db).await?;
            println!("open referrals recounted for {staff} staff");
            Ok(())
        }
        Command::Migrate { settings } => {
            let db = open_database(&settings).await?;
            crm_store::migrator::migrate(&db, Schema::All).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}

/// The database a one-off command works on (jobs, migrations).
async fn open_database(settings: &crm_runtime::Settings) -> anyhow::Result<crm_store::Db> {
    crm_runtime::install_crypto_provider();
    Ok(crm_store::connect(
        &settings.database_url()?,
        settings.database_schema.as_deref(),
    )
    .await?)
}

async fn serve(settings: crm_runtime::Settings) -> anyhow::Result<()> {
    crm_runtime::run_process("crm", &settings, Schema::All, &all_modules()).await?;
    Ok(())
}

async fn dead_letters(
    action: DeadLetterAction,
    settings: &crm_runtime::Settings,
) -> anyhow::Result<()> {
    if settings.amqp_url.is_none() {
        anyhow::bail!(
            "set CRM_AMQP_URL: the in-process transport keeps its dead letters in the serving process's memory"
        );
    }
    crm_runtime::install_crypto_provider();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = crm_bus::Bus::start(
        &crm_bus::BusConfig {
            amqp_url: settings.amqp_url.clone(),
            prefix: settings.queue_prefix.clone(),
            ephemeral: settings.ephemeral_queues,
        },
        shutdown.clone(),
    )
    .await?;
    match action {
        DeadLetterAction::List { limit } => {
            let letters = bus.dead_letters(limit).await?;
            for letter in &letters {
                println!(
                    "{}  {}  routing_key={}  occurred_at={}  died_in={}  reason={}",
                    letter.envelope.message_id,
                    letter.envelope.message_type,
                    letter.envelope.routing_key,
                    letter.envelope.occurred_at.to_rfc3339(),
                    letter.queue.as_deref().unwrap_or("?"),
                    letter.reason.as_deref().unwrap_or("?"),
                );
            }
            println!("{} dead-lettered message(s) shown", letters.len());
        }
        DeadLetterAction::Replay { limit } => {
            let replayed = bus.replay_dead_letters(limit).await?;
            println!("{replayed} message(s) replayed");
        }
    }
    shutdown.cancel();
    Ok(())
}

fn all_modules() -> [&'static dyn crm_runtime::ServiceModule; 4] {
    [
        &crm_clients::Module,
        &crm_referrals::Module,
        &crm_events::Module,
        &crm_campaigns::Module,
    ]
}
