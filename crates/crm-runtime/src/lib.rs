//! What every server process of the suite shares: its settings, opening the
//! database and the bus, the gRPC server (health, reflection, auth, a span per RPC),
//! one shutdown token that drains everything on SIGTERM or ctrl-c, and the
//! [`ServiceModule`] contract through which a service declares itself once.

mod app;
pub mod job_runs;
mod metrics_endpoint;
mod module;
mod rpc_metrics;
mod server;
mod settings;
mod vitals;

pub use app::{App, AppError, Infra, ProcessError, run_process};
pub use module::{
    Job, JobContext, JobFuture, MIGRATION_LOCK_SQL, ModuleError, ModuleSettings, ServiceModule,
    SettingsSection, migrate, select, suite_queues,
};
pub use server::{Server, ServerError, shutdown_on_signals};
pub use settings::{Settings, SettingsError};

/// Installs ring as rustls' process-wide crypto provider. sea-orm's rustls and
/// lapin's would otherwise disagree and panic at the first TLS connection
/// (STACK.md trap 1).
pub fn install_crypto_provider() {
    // Already installed (tests call this many times) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
