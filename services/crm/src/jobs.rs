//! `crm jobs <name>`: a service's one-shot job against the database of the
//! settings (the service's own schema in the distributed mode), run under the
//! job's lease and recorded (`crm_runtime::job_runs`); `crm jobs history` lists
//! the runs and `crm jobs schedule` the next run times.

use crm_runtime::job_runs;
use crm_runtime::{JobContext, Settings};

use crm::{HISTORY, JobChoice, SCHEDULE, SectionArgs};

pub async fn run(
    choice: JobChoice,
    settings: &Settings,
    sections: SectionArgs,
) -> anyhow::Result<()> {
    match choice.name.as_str() {
        HISTORY => return history(&choice, settings).await,
        SCHEDULE => return schedule(&choice, settings),
        _ => {}
    }
    let job = choice
        .job()
        .ok_or_else(|| anyhow::anyhow!("no job named {}", choice.name))?;
    // A CronJob's process: its logs, its trace, and its run's metric pushed over
    // OTLP before it exits (nothing would scrape it).
    let telemetry = crm_telemetry::init(&crm_telemetry::TelemetryConfig::from_env(&format!(
        "crm-job-{}",
        job.name
    )))?;
    let ran = async {
        let db = open_database(settings).await?;
        let report = job_runs::run_recorded(
            &job,
            JobContext {
                db,
                settings: sections.0,
                args: choice.args,
                calendar: settings.business_calendar(),
                // Only the re-seal jobs need it; the others run without CRM_PII_KEY.
                vault: settings.vault().ok(),
            },
        )
        .await?;
        println!("{report}");
        anyhow::Ok(())
    }
    .await;
    telemetry.shutdown();
    ran
}

async fn history(choice: &JobChoice, settings: &Settings) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    let job = choice.args.get_one::<String>("job").map(String::as_str);
    let limit = choice.args.get_one::<u64>("limit").copied().unwrap_or(20);
    let runs = job_runs::history(&db, job, limit).await?;
    if runs.is_empty() {
        println!("no job runs recorded in this database");
    }
    let zone = settings.bank_time_zone;
    let local = |at: chrono::DateTime<chrono::Utc>| {
        at.with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    for view in runs {
        let run = &view.run;
        let finished = run.finished_at.map_or_else(|| "-".to_owned(), local);
        let said = if run.error.is_empty() {
            &run.summary
        } else {
            &run.error
        };
        println!(
            "{started}  {finished}  {job:<22} {outcome:<9} {run_id}  {holder}\n    {said}",
            started = local(run.started_at),
            job = run.job,
            outcome = view.shown_outcome,
            run_id = run.run_id,
            holder = run.holder,
            said = said.replace('\n', "\n    "),
        );
    }
    Ok(())
}

fn schedule(choice: &JobChoice, settings: &Settings) -> anyhow::Result<()> {
    let count = choice.args.get_one::<u64>("count").copied().unwrap_or(3);
    let zone = settings.bank_time_zone;
    let now = chrono::Utc::now();
    println!("times in {zone}");
    for job in crm::jobs() {
        let Some(schedule) = job.schedule else {
            continue;
        };
        let times = job_runs::next_runs(schedule, zone, now, usize::try_from(count)?)
            .map_err(anyhow::Error::msg)?;
        let times: Vec<String> = times
            .iter()
            .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
            .collect();
        println!("{:<22} {:<16} {}", job.name, schedule, times.join(", "));
    }
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
