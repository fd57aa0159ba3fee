//! What every server process of the suite shares: its settings, opening the
//! database and the bus, the gRPC server (health, reflection, auth, a span per RPC),
//! and one shutdown token that drains everything on SIGTERM or ctrl-c.

mod app;
mod server;
mod settings;

pub use app::{App, AppError, Infra, ProcessError, ServiceModule, run_process};
pub use server::{Server, ServerError, shutdown_on_signals};
pub use settings::{Settings, SettingsError};

/// Installs ring as rustls' process-wide crypto provider. sea-orm's rustls and
/// lapin's would otherwise disagree and panic at the first TLS connection
/// (STACK.md trap 1).
pub fn install_crypto_provider() {
    // Already installed (tests call this many times) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
