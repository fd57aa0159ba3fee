//! `crm jobs <name>`: a service's one-shot job against the database of the
//! settings (the service's own schema in the distributed mode).

use crm_runtime::{JobContext, Settings};

use crm::{JobChoice, SectionArgs};

pub async fn run(
    choice: JobChoice,
    settings: &Settings,
    sections: SectionArgs,
) -> anyhow::Result<()> {
    let job = choice
        .job()
        .ok_or_else(|| anyhow::anyhow!("no job named {}", choice.name))?;
    let db = open_database(settings).await?;
    let report = (job.run)(JobContext {
        db,
        settings: sections.0,
        args: choice.args,
        calendar: settings.business_calendar(),
    })
    .await?;
    println!("{report}");
    Ok(())
}

/// The database a one-off command works on (jobs, migrations).
pub async fn open_database(settings: &Settings) -> anyhow::Result<crm_store::Db> {
    crm_runtime::install_crypto_provider();
    Ok(crm_store::connect(
        &settings.database_url()?,
        settings.database_schema.as_deref(),
    )
    .await?)
}
