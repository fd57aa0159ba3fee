//! What a service declares about itself, once: its name, its tables, the events it
//! consumes, its settings section, its background work and its one-shot jobs. The
//! process (`crm serve`, `crm migrate`, `crm jobs`, the demo, the test kit) reads
//! these declarations from one list of modules and knows no service by name.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use clap::{ArgMatches, Command};
use crm_bus::ServiceQueue;
use crm_domain::sla::BusinessCalendar;
use crm_store::Db;
use sea_orm_migration::MigrationTrait;
use sea_orm_migration::migrator::{Migration, MigratorTraitSelf};

use crate::{Infra, Server, SettingsError};

/// A service of the suite, as a process mounts it.
pub trait ServiceModule: Send + Sync {
    /// Its name: the `--services` value, its queue (`crm.<name>`), its outbox source.
    fn name(&self) -> &'static str;

    /// Its own tables' migrations, oldest first. The outbox and inbox come from
    /// the runtime; a service never migrates another's tables.
    fn migrations(&self) -> Vec<Box<dyn MigrationTrait>>;

    /// The event types (routing keys, `*`/`#` patterns allowed) its queue binds.
    fn consumes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Exchanges of outside systems it takes raw messages from (its feeds), each
    /// into a queue of its own.
    fn feeds(&self) -> &'static [&'static str] {
        &[]
    }

    /// Adds its settings section (flags, each also a `CRM_*` variable) to a command
    /// line: usually `MySettings::augment_args(command)`.
    fn settings(&self, command: Command) -> Command {
        command
    }

    /// Checks its settings section; runs before anything is opened, so a bad value
    /// stops the process at start with a message that names it.
    fn check_settings(&self, _settings: &ModuleSettings) -> Result<(), SettingsError> {
        Ok(())
    }

    /// Adds its gRPC services to `server` and spawns its background work (relay,
    /// consumers, timers) on `infra.tasks`, each stopping on `infra.shutdown`.
    fn mount(&self, infra: &Infra, server: &mut Server) -> Result<(), ModuleError>;

    /// Its one-shot jobs, run as `crm jobs <name>` by cron or a scheduler.
    fn jobs(&self) -> Vec<Job> {
        Vec::new()
    }
}

/// A module failed to start or a job failed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl ModuleError {
    /// Wraps a service's own error.
    pub fn failed(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ModuleError::Failed(Box::new(error))
    }
}

/// A service's settings section: a `clap::Args` struct whose flags each also read
/// a `CRM_*` variable, with the checks clap's parsers can't express.
pub trait SettingsSection: clap::Args + Sized {
    /// Every problem with the values, in words an operator can act on.
    fn validate(&self) -> Result<(), String>;
}

/// The parsed settings sections of every module in the suite (the process's
/// command line and environment).
#[derive(Debug, Clone)]
pub struct ModuleSettings {
    matches: ArgMatches,
}

impl ModuleSettings {
    pub fn from_matches(matches: ArgMatches) -> Self {
        Self { matches }
    }

    /// The command line that carries every module's section.
    pub fn command(modules: &[&dyn ServiceModule], command: Command) -> Command {
        modules
            .iter()
            .fold(command, |command, module| module.settings(command))
    }

    /// The sections from `args` (flags) and the environment, as a process would
    /// parse them: tests and the demo, which have no command line of their own.
    pub fn parse_from<I, T>(modules: &[&dyn ServiceModule], args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::command(modules, Command::new("crm").no_binary_name(true));
        let matches = command
            .try_get_matches_from(args)
            .map_err(|error| SettingsError::Section(error.to_string()))?;
        Ok(Self { matches })
    }

    /// Every section at its default (or from the environment).
    pub fn defaults(modules: &[&dyn ServiceModule]) -> Result<Self, SettingsError> {
        Self::parse_from(modules, std::iter::empty::<String>())
    }

    /// One service's section, parsed and validated.
    pub fn section<S: SettingsSection>(&self) -> Result<S, SettingsError> {
        let section = S::from_arg_matches(&self.matches)
            .map_err(|error| SettingsError::Section(error.to_string()))?;
        section.validate().map_err(SettingsError::Section)?;
        Ok(section)
    }
}

/// What a job gets to work with: the service's database and the settings.
pub struct JobContext {
    pub db: Db,
    /// Every module's settings section.
    pub settings: ModuleSettings,
    /// The job's own flags (see [`Job::args`]).
    pub args: ArgMatches,
    pub calendar: BusinessCalendar,
    /// Personal data's keys, for the jobs that re-seal it; `None` where
    /// CRM_PII_KEY is not set (the other jobs don't need it).
    pub vault: Option<std::sync::Arc<crm_store::Vault>>,
}

impl JobContext {
    /// The personal-data keys, for a job that needs them: CRM_PII_KEY must be set.
    pub fn vault(&self) -> Result<std::sync::Arc<crm_store::Vault>, ModuleError> {
        self.vault
            .clone()
            .ok_or(ModuleError::Settings(SettingsError::NoPiiKey))
    }
}

pub type JobFuture = Pin<Box<dyn Future<Output = Result<String, ModuleError>> + Send>>;

/// A one-shot job of a service: safe to run twice or concurrently. It answers a
/// line saying what it did.
#[derive(Clone, Copy)]
pub struct Job {
    pub name: &'static str,
    pub about: &'static str,
    /// Adds the job's own flags to its subcommand.
    pub args: fn(Command) -> Command,
    pub run: fn(JobContext) -> JobFuture,
    /// When it runs, as cron (minute hour day-of-month month day-of-week) in the
    /// bank's time zone; `None` for maintenance commands an operator runs by hand.
    pub schedule: Option<&'static str>,
}

impl Job {
    /// The job's subcommand, `crm jobs <name>`.
    pub fn command(&self) -> Command {
        (self.args)(Command::new(self.name).about(self.about))
    }
}

/// The queues of every consuming module: each process declares them all, so a
/// message is never published before the queue of the service that wants it.
pub fn suite_queues(suite: &[&dyn ServiceModule]) -> Vec<ServiceQueue> {
    suite
        .iter()
        .filter(|module| !module.consumes().is_empty() || !module.feeds().is_empty())
        .map(|module| {
            ServiceQueue::new(module.name(), module.consumes()).with_feeds(module.feeds())
        })
        .collect()
}

/// The modules of `suite` that `names` selects (all of them when `names` is empty),
/// in the suite's order.
pub fn select<'m>(
    suite: &[&'m dyn ServiceModule],
    names: &[String],
) -> Result<Vec<&'m dyn ServiceModule>, SettingsError> {
    if let Some(unknown) = names
        .iter()
        .find(|name| !suite.iter().any(|module| module.name() == name.as_str()))
    {
        return Err(SettingsError::UnknownService {
            name: unknown.clone(),
            known: suite.iter().map(|module| module.name()).collect(),
        });
    }
    Ok(suite
        .iter()
        .copied()
        .filter(|module| names.is_empty() || names.iter().any(|name| name == module.name()))
        .collect())
}

/// The migrations of one process: the outbox and inbox, the job runs and leases,
/// then each mounted
/// module's own. In the distributed mode a process mounts one service on its own
/// schema; the embedded default mounts them all on one database.
struct ProcessMigrator<'m> {
    modules: &'m [&'m dyn ServiceModule],
}

#[async_trait::async_trait]
impl MigratorTraitSelf for ProcessMigrator<'_> {
    fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = crm_store::bus::migrations();
        migrations.extend(crm_store::jobs::migrations());
        for module in self.modules {
            migrations.extend(module.migrations());
        }
        migrations
    }

    /// This process's migrations not yet applied. sea-orm's default refuses to run
    /// when the database records migrations it doesn't list; a process mounting
    /// some of the services on a database that holds them all (one service of the
    /// embedded default's file, a schema an older `crm migrate` filled) must still
    /// start, so migrations of other services are simply not this process's.
    async fn get_pending_migrations<C>(&self, db: &C) -> Result<Vec<Migration>, sea_orm::DbErr>
    where
        C: sea_orm::ConnectionTrait,
    {
        let applied: HashSet<String> = self
            .get_migration_models(db)
            .await?
            .into_iter()
            .map(|model| model.version)
            .collect();
        Ok(self
            .get_migration_files()
            .into_iter()
            .filter(|migration| !applied.contains(migration.name()))
            .collect())
    }
}

/// The advisory lock replicas (and the release's migration Job) take in turn
/// before migrating a schema: the key is the schema's, so services on their own
/// schemas don't wait for each other.
pub const MIGRATION_LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('crm-migrations:' || current_schema(), 0))";

/// Brings the tables of `modules` up to date; safe on every start and from many
/// replicas at once: on PostgreSQL they take turns under an advisory lock, and
/// the second finds nothing left to do. Meanwhile health says NOT_SERVING.
pub async fn migrate(db: &Db, modules: &[&dyn ServiceModule]) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if crm_store::Dialect::of(db) != crm_store::Dialect::Postgres {
        return ProcessMigrator { modules }.up(db, None).await;
    }
    // Held by this transaction's connection until it ends; the migrations run on
    // others of the pool.
    let turn = db.begin().await?;
    turn.execute_unprepared(MIGRATION_LOCK_SQL).await?;
    let migrated = ProcessMigrator { modules }.up(db, None).await;
    turn.commit().await?;
    migrated
}
