//! The suite: the one list of its services, which `crm serve`, `crm migrate`,
//! `crm jobs`, the demo and the test kit all read. Adding a service is a new crate
//! under `services/` and one line in [`MODULES`].

use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};
use crm_runtime::{Job, ModuleSettings, ServiceModule};

/// Every service of the suite, in the order a process mounts and migrates them.
pub const MODULES: &[&dyn ServiceModule] = &[
    &crm_clients::Module,
    &crm_referrals::Module,
    &crm_events::Module,
    &crm_campaigns::Module,
];

/// Every module's settings section, as flags (each also a `CRM_*` variable) of
/// the command it is flattened into.
#[derive(Debug, Clone)]
pub struct SectionArgs(pub ModuleSettings);

impl FromArgMatches for SectionArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self(ModuleSettings::from_matches(matches.clone())))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SectionArgs {
    fn augment_args(command: Command) -> Command {
        ModuleSettings::command(MODULES, command)
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// Every module's jobs.
pub fn jobs() -> Vec<Job> {
    MODULES.iter().flat_map(|module| module.jobs()).collect()
}

/// Runs `crm jobs <name> <args…>` on `db`, under the job's lease and recorded:
/// what the command, the demo, the test kit and the benchmarks all call.
pub async fn run_job(
    db: crm_store::Db,
    name: &str,
    args: &[&str],
    settings: ModuleSettings,
    calendar: crm_domain::sla::BusinessCalendar,
    vault: Option<std::sync::Arc<crm_store::Vault>>,
) -> Result<String, crm_runtime::ModuleError> {
    let job = jobs()
        .into_iter()
        .find(|job| job.name == name)
        .ok_or_else(|| crm_runtime::ModuleError::Failed(format!("no job named {name}").into()))?;
    let args = job
        .command()
        .try_get_matches_from(std::iter::once(name).chain(args.iter().copied()))
        .map_err(crm_runtime::ModuleError::failed)?;
    crm_runtime::job_runs::run_recorded(
        &job,
        crm_runtime::JobContext {
            db,
            settings,
            args,
            calendar,
            vault,
        },
    )
    .await
}

/// `crm jobs history`: the latest runs of every job, or of one.
pub const HISTORY: &str = "history";
/// `crm jobs schedule`: each scheduled job's next run times.
pub const SCHEDULE: &str = "schedule";

fn history_command() -> Command {
    Command::new(HISTORY)
        .about("List the latest job runs (start, end, outcome, what each did or its error), newest first; a run that died shows as crashed")
        .arg(clap::Arg::new("job").long("job").help("Only this job's runs"))
        .arg(
            clap::Arg::new("limit")
                .long("limit")
                .default_value("20")
                .value_parser(clap::value_parser!(u64).range(1..=1000)),
        )
}

fn schedule_command() -> Command {
    Command::new(SCHEDULE)
        .about("Print each scheduled job's cron schedule and next run times in the bank's time zone (CRM_BANK_TIME_ZONE)")
        .arg(
            clap::Arg::new("count")
                .long("count")
                .default_value("3")
                .value_parser(clap::value_parser!(u64).range(1..=50)),
        )
}

/// The job `crm jobs <name>` names, with its own flags (or `history`, `schedule`).
#[derive(Debug, Clone)]
pub struct JobChoice {
    pub name: String,
    pub args: ArgMatches,
}

impl JobChoice {
    pub fn job(&self) -> Option<Job> {
        jobs().into_iter().find(|job| job.name == self.name)
    }
}

impl FromArgMatches for JobChoice {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        match matches.subcommand() {
            Some((name, args)) => Ok(Self {
                name: name.to_owned(),
                args: args.clone(),
            }),
            None => Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand)),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for JobChoice {
    fn augment_subcommands(command: Command) -> Command {
        jobs()
            .iter()
            .fold(command, |command, job| command.subcommand(job.command()))
            .subcommand(history_command())
            .subcommand(schedule_command())
    }

    fn augment_subcommands_for_update(command: Command) -> Command {
        Self::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        name == HISTORY || name == SCHEDULE || jobs().iter().any(|job| job.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::MODULES;
    use std::collections::BTreeSet;

    #[test]
    fn service_names_and_job_names_are_unique() {
        let names: BTreeSet<_> = MODULES.iter().map(|module| module.name()).collect();
        assert_eq!(names.len(), MODULES.len());
        let jobs = super::jobs();
        let job_names: BTreeSet<_> = jobs.iter().map(|job| job.name).collect();
        assert_eq!(job_names.len(), jobs.len());
        assert!(!job_names.contains(super::HISTORY) && !job_names.contains(super::SCHEDULE));
        for job in &jobs {
            if let Some(schedule) = job.schedule {
                crm_runtime::job_runs::next_runs(
                    schedule,
                    chrono_tz::Asia::Shanghai,
                    chrono::Utc::now(),
                    1,
                )
                .unwrap_or_else(|error| panic!("{}: {error}", job.name));
            }
        }
    }

    #[test]
    fn every_settings_section_parses_at_its_defaults() {
        // clap panics on two sections declaring the same flag; this builds them all.
        let settings = crm_runtime::ModuleSettings::defaults(MODULES).unwrap();
        for module in MODULES {
            module.check_settings(&settings).unwrap();
        }
    }
}
