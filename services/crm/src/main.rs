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
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        settings: crm_runtime::Settings,
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
        Command::Migrate { settings } => {
            crm_runtime::install_crypto_provider();
            let db = crm_store::connect(
                &settings.database_url()?,
                settings.database_schema.as_deref(),
            )
            .await?;
            crm_store::migrator::migrate(&db, Schema::All).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}

async fn serve(settings: crm_runtime::Settings) -> anyhow::Result<()> {
    crm_runtime::run_process("crm", &settings, Schema::All, &all_modules()).await?;
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
