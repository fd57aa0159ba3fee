//! `crm`: the whole suite in one binary.
//!
//! `crm serve` mounts the services its settings name (all by default: the embedded
//! default; one per process in the distributed mode); `crm demo` seeds a small bank
//! and plays a teller's referral through to an RM's phone; `crm migrate` brings a
//! database up to date; `crm jobs` runs the services' scheduled jobs; `crm token`
//! mints a development token; `crm dead-letters` shows and replays dead letters.

/// mimalloc rather than glibc's malloc: under load glibc's free-list upkeep
/// (`_int_malloc`, `malloc_consolidate`) was a quarter of the process's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod dead_letters;
mod demo;
mod jobs;
mod outbox;

use clap::{Parser, Subcommand};
use crm::{JobChoice, MODULES, SectionArgs};
use crm_domain::{BranchId, Role, StaffId};
use crm_runtime::Settings;
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
    /// Serve the services CRM_SERVICES names (default: all) on one address.
    Serve {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        sections: SectionArgs,
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
        #[arg(long, env = "CRM_JWT_SECRET", hide_env_values = true, value_parser = secret)]
        secret: SecretString,
    },
    /// Show or replay messages in the dead-letter queue (RabbitMQ).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
        #[command(flatten)]
        settings: Settings,
    },
    /// Outbox rows the relay set aside (they failed alone while others went out):
    /// show them with why, or return them to the relay.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply the migrations of the services CRM_SERVICES names (default: all, in
    /// one database) and exit. In the distributed mode run it once per service,
    /// each with its own CRM_DATABASE_SCHEMA.
    Migrate {
        #[command(flatten)]
        settings: Settings,
    },
    /// A service's scheduled job (run it from cron or a scheduler; each is safe to
    /// run twice or concurrently) against that service's database.
    Jobs {
        #[command(subcommand)]
        job: JobChoice,
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        sections: SectionArgs,
    },
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

/// Reads a secret straight into a type that never prints it.
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Print the rows set aside, oldest first, with the error that set them aside.
    Parked {
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Return rows to the relay: those named, or every one set aside.
    Retry {
        #[arg(long = "message-id")]
        message_ids: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { settings, sections } => {
            crm_runtime::run_process("crm", &settings, &sections.0, MODULES).await?;
            Ok(())
        }
        Command::Demo { clients } => demo::run(clients).await,
        Command::Token {
            sub,
            role,
            branch,
            ttl_minutes,
            secret,
        } => {
            let keys = crm_auth::JwtKeys::hs256(&secret)?;
            let token = keys.mint(
                &StaffId::parse(&sub).map_err(|e| anyhow::anyhow!("--sub {e}"))?,
                role,
                &BranchId::parse(&branch).map_err(|e| anyhow::anyhow!("--branch {e}"))?,
                chrono::Duration::minutes(ttl_minutes),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::DeadLetters { action, settings } => dead_letters::run(action, &settings).await,
        Command::Outbox { action, settings } => outbox::run(action, &settings).await,
        Command::Jobs {
            job,
            settings,
            sections,
        } => jobs::run(job, &settings, sections).await,
        Command::Migrate { settings } => {
            // An unknown name is refused before anything is opened or created.
            let modules = crm_runtime::select(MODULES, &settings.services)?;
            let db = jobs::open_database(&settings).await?;
            crm_runtime::migrate(&db, &modules).await?;
            let names: Vec<_> = modules.iter().map(|module| module.name()).collect();
            println!("migrations applied: {}", names.join(", "));
            Ok(())
        }
    }
}
