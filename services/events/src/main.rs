//! The events service alone, for the distributed mode.

use clap::Parser;

#[derive(Parser)]
#[command(name = "crm-events", about = "The events service of the RM CRM suite")]
struct Cli {
    #[command(flatten)]
    settings: crm_runtime::Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let schema = crm_store::migrator::Schema::MessagingOnly;
    crm_runtime::run_process("crm-events", &cli.settings, schema, &[&crm_events::Module]).await?;
    Ok(())
}
