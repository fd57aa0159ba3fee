//! The referrals service alone, for the distributed mode.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "crm-referrals",
    about = "The referrals service of the RM CRM suite"
)]
struct Cli {
    #[command(flatten)]
    settings: crm_runtime::Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let schema = crm_store::migrator::Schema::Referrals;
    crm_runtime::run_process(
        "crm-referrals",
        &cli.settings,
        schema,
        &[&crm_referrals::Module],
    )
    .await?;
    Ok(())
}
