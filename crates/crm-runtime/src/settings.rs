use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crm_auth::JwtKeys;
use secrecy::SecretString;

/// The settings of API.md, each a flag and a `CRM_*` environment variable.
#[derive(clap::Args, Clone)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "CRM_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    /// `postgres://…` or `sqlite://…`; default: a SQLite file under ./data/.
    #[arg(long, env = "CRM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema for this process's tables (one per service in production).
    #[arg(long, env = "CRM_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// `amqp://…`; unset: the in-process transport.
    #[arg(long, env = "CRM_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// Prefixed to every exchange and queue name.
    #[arg(long, env = "CRM_QUEUE_PREFIX", default_value = "")]
    pub queue_prefix: String,
    /// Queues expire when unused and exchanges auto-delete (tests and demos).
    #[arg(long, env = "CRM_EPHEMERAL_QUEUES", default_value_t = false)]
    pub ephemeral_queues: bool,
    /// HS256 secret for tokens (at least 16 bytes).
    #[arg(long, env = "CRM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// RS256 public key (PEM) of the identity provider; takes precedence.
    #[arg(long, env = "CRM_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen_addr", &self.listen_addr)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_schema", &self.database_schema)
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field("queue_prefix", &self.queue_prefix)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("jwt_public_key", &self.jwt_public_key)
            .finish()
    }
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}://{user}:***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("CRM_JWT_SECRET (or CRM_JWT_PUBLIC_KEY) must be set")]
    NoJwtKey,
    #[error("jwt key: {0}")]
    JwtKey(#[from] crm_auth::AuthError),
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    /// The database URL, defaulting to `./data/crm.db` (created with its folder).
    pub fn database_url(&self) -> Result<String, SettingsError> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        let folder = PathBuf::from("data");
        std::fs::create_dir_all(&folder).map_err(|source| SettingsError::Read {
            path: folder.clone(),
            source,
        })?;
        Ok("sqlite://data/crm.db?mode=rwc".to_owned())
    }

    pub fn jwt_keys(&self) -> Result<Arc<JwtKeys>, SettingsError> {
        if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path).map_err(|source| SettingsError::Read {
                path: path.clone(),
                source,
            })?;
            return Ok(Arc::new(JwtKeys::rs256_public(&pem)?));
        }
        let secret = self.jwt_secret.clone().ok_or(SettingsError::NoJwtKey)?;
        Ok(Arc::new(JwtKeys::hs256(&SecretString::from(secret))?))
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/crm"),
            "postgres://127.0.0.1/crm"
        );
    }
}
