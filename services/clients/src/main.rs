//! The clients service alone, for the distributed mode.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "crm-clients",
    about = "The clients service of the RM CRM suite"
)]
struct Cli {
    #[command(flatten)]
    settings: crm_runtime::Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let schema = crm_store::migrator::Schema::Clients;
    crm_runtime::run_process(
        "crm-clients",
        &cli.settings,
        schema,
        &[&crm_clients::Module],
    )
    .await?;
    Ok(())
}
