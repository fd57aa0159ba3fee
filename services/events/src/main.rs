//! The events service alone, for the distributed mode.

use clap::Parser;
use crm_store::migrator::Schema;

#[derive(Parser)]
#[command(name = "crm-events", about = "The events service of the RM CRM suite")]
struct Cli {
    #[command(flatten)]
    settings: crm_runtime::Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = crm_telemetry::init(&crm_telemetry::TelemetryConfig::from_env("crm-events"))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    crm_runtime::shutdown_on_signals(shutdown.clone());
    let app = crm_runtime::App::build(
        &cli.settings,
        Schema::MessagingOnly,
        &[&crm_events::Module],
        shutdown,
    )
    .await?;
    tracing::info!(addr = %app.local_addr()?, "crm-events listening");
    let result = app.run().await;
    telemetry.shutdown();
    Ok(result?)
}
