use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use crm_auth::{JwtKeys, JwtPolicy};
use crm_domain::sla::BusinessCalendar;
use crm_store::Vault;
use secrecy::SecretString;

/// The settings of API.md, each a flag and a `CRM_*` environment variable.
#[derive(clap::Args, Clone)]
pub struct Settings {
    /// The services this process mounts (comma-separated names, e.g.
    /// `referrals`); unset: every service of the suite. The distributed mode runs
    /// one per process, each on its own database schema.
    #[arg(
        long,
        visible_alias = "service",
        env = "CRM_SERVICES",
        value_delimiter = ','
    )]
    pub services: Vec<String>,
    /// Address the gRPC server listens on.
    #[arg(long, env = "CRM_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (e.g. `0.0.0.0:9464`); unset: no
    /// endpoint (OTLP still exports when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
    #[arg(long, env = "CRM_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// `postgres://…` or `sqlite://…`; default: a SQLite file under ./data/.
    #[arg(long, env = "CRM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema for this process's tables (one per service in production).
    #[arg(long, env = "CRM_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// `amqp://…` or `amqps://…`; several comma-separated for the nodes of one
    /// RabbitMQ cluster (the next is used when one is gone); unset: the
    /// in-process transport.
    #[arg(long, env = "CRM_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// The CA certificate (PEM file) that signed the brokers' certificates, for
    /// `amqps://`; unset: the system's roots.
    #[arg(long, env = "CRM_AMQP_CA_CERT")]
    pub amqp_ca_cert: Option<PathBuf>,
    /// This server's certificate chain (PEM file): gRPC over TLS. With
    /// CRM_TLS_KEY.
    #[arg(long, env = "CRM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// This server's private key (PEM file).
    #[arg(long, env = "CRM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: callers must present a certificate signed by this CA (PEM).
    /// The services' own calls to each other then present CRM_TLS_CERT.
    #[arg(long, env = "CRM_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) the services' certificates chain to, trusted when one service
    /// calls another over gRPC (events asks the client book); unset:
    /// CRM_TLS_CLIENT_CA, else the system's roots.
    #[arg(long, env = "CRM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Prefixed to every exchange and queue name.
    #[arg(long, env = "CRM_QUEUE_PREFIX", default_value = "")]
    pub queue_prefix: String,
    /// Queues expire when unused and exchanges auto-delete (tests and demos).
    #[arg(long, env = "CRM_EPHEMERAL_QUEUES", default_value_t = false)]
    pub ephemeral_queues: bool,
    /// HS256 secret for tokens (at least 32 bytes).
    #[arg(long, env = "CRM_JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<SecretString>,
    /// The identity provider's public keys: a JWKS file, or one RS256/ES256 public
    /// key in PEM. Takes precedence over CRM_JWT_SECRET.
    #[arg(long, env = "CRM_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Tokens must carry this `iss` (the identity provider), when set.
    #[arg(long, env = "CRM_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Tokens must name this in `aud` (this application), when set; a token
    /// minted for another application is refused.
    #[arg(long, env = "CRM_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The longest a presented token may still be valid for, in minutes.
    #[arg(
        long,
        env = "CRM_JWT_MAX_LIFETIME_MINUTES",
        default_value_t = 720,
        value_parser = clap::value_parser!(u32).range(1..=10_080)
    )]
    pub jwt_max_lifetime_minutes: u32,
    /// 32 random bytes, base64 (`openssl rand -base64 32`): seals national ids and
    /// phone numbers at rest and keys their lookup hashes and page tokens.
    #[arg(long, env = "CRM_PII_KEY", hide_env_values = true, value_parser = secret)]
    pub pii_key: Option<SecretString>,
    /// The keys CRM_PII_KEY replaced (comma-separated, newest first): what they
    /// sealed still opens and is still found, until `crm jobs reseal-client-pii`
    /// and `reseal-referral-pii` have re-sealed it under the current key.
    #[arg(
        long,
        env = "CRM_PII_PREVIOUS_KEYS",
        hide_env_values = true,
        value_delimiter = ',',
        value_parser = secret
    )]
    pub pii_previous_keys: Vec<SecretString>,
    /// Weekdays the bank is closed (YYYY-MM-DD, local dates), e.g. the Spring
    /// Festival and National Day holidays: SLA clocks don't run on them.
    #[arg(long, env = "CRM_BANK_HOLIDAYS", value_delimiter = ',')]
    pub bank_holidays: Vec<NaiveDate>,
    /// Weekend days the bank works instead (YYYY-MM-DD): SLA clocks run on them.
    #[arg(long, env = "CRM_BANK_WORKDAYS", value_delimiter = ',')]
    pub bank_workdays: Vec<NaiveDate>,
    /// The bank's time zone (IANA name): its quarters, month-ends, "today", and
    /// the times the scheduled jobs run at.
    #[arg(long, env = "CRM_BANK_TIME_ZONE", default_value = "Asia/Shanghai", value_parser = time_zone)]
    pub bank_time_zone: chrono_tz::Tz,
    /// On the embedded default (in-process transport), `crm serve` runs the
    /// scheduled jobs itself at their times (`crm jobs schedule`); with RabbitMQ
    /// the platform's scheduler (the Kubernetes CronJobs) runs them instead.
    #[arg(long, env = "CRM_RUN_SCHEDULES", default_value_t = true, action = clap::ArgAction::Set)]
    pub run_schedules: bool,
}

fn time_zone(value: &str) -> Result<chrono_tz::Tz, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not an IANA time zone (e.g. Asia/Shanghai)"))
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets print as `[REDACTED]` (SecretString); URLs lose their passwords.
        f.debug_struct("Settings")
            .field("services", &self.services)
            .field("listen_addr", &self.listen_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_schema", &self.database_schema)
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field("amqp_ca_cert", &self.amqp_ca_cert)
            .field("tls_cert", &self.tls_cert)
            .field("tls_client_ca", &self.tls_client_ca)
            .field("tls_ca", &self.tls_ca)
            .field("queue_prefix", &self.queue_prefix)
            .field("jwt_secret", &self.jwt_secret)
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_max_lifetime_minutes", &self.jwt_max_lifetime_minutes)
            .field("pii_key", &self.pii_key)
            .field("pii_previous_keys", &self.pii_previous_keys)
            .field("bank_holidays", &self.bank_holidays)
            .field("bank_workdays", &self.bank_workdays)
            .finish()
    }
}

/// A PEM file's text, or which file could not be read.
fn read_text(path: &std::path::Path) -> Result<String, SettingsError> {
    std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a secret straight into a type that never prints it.
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`, each of a
/// comma-separated list (a cluster's nodes).
fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(redact_one_url)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one_url(url: &str) -> String {
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
    #[error("CRM_PII_KEY must be set: 32 random bytes, base64 (`openssl rand -base64 32`)")]
    NoPiiKey,
    #[error(transparent)]
    PiiKey(#[from] crm_store::VaultError),
    /// A service's settings section is invalid; the text names the setting.
    #[error("{0}")]
    Section(String),
    #[error(
        "CRM_AMQP_URL must be set to run only {mounted:?}: without it the services talk \
         over an in-process bus, which cannot reach services in other processes"
    )]
    InProcessBusNeedsEveryService { mounted: Vec<&'static str> },
    #[error("no service named {name:?} (CRM_SERVICES); the suite has {known:?}")]
    UnknownService {
        name: String,
        known: Vec<&'static str>,
    },
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
        let keys = if let Some(path) = &self.jwt_public_key {
            let document = std::fs::read(path).map_err(|source| SettingsError::Read {
                path: path.clone(),
                source,
            })?;
            JwtKeys::public_keys(&document)?
        } else {
            let secret = self.jwt_secret.as_ref().ok_or(SettingsError::NoJwtKey)?;
            JwtKeys::hs256(secret)?
        };
        Ok(Arc::new(keys.with_policy(self.jwt_policy())))
    }

    /// What every token must satisfy beyond its signature.
    pub fn jwt_policy(&self) -> JwtPolicy {
        JwtPolicy {
            issuer: self.jwt_issuer.clone().filter(|issuer| !issuer.is_empty()),
            audience: self
                .jwt_audience
                .clone()
                .filter(|audience| !audience.is_empty()),
            max_lifetime: chrono::Duration::minutes(self.jwt_max_lifetime_minutes.into()),
        }
    }
}

impl Settings {
    pub fn vault(&self) -> Result<Arc<Vault>, SettingsError> {
        let key = self.pii_key.as_ref().ok_or(SettingsError::NoPiiKey)?;
        Ok(Arc::new(Vault::with_previous_keys(
            key,
            &self.pii_previous_keys,
        )?))
    }

    /// The bus of a process in `suite`: this process's transport and prefix, and
    /// every consuming service's queue.
    pub fn bus_config(
        &self,
        suite: &[&dyn crate::ServiceModule],
    ) -> Result<crm_bus::BusConfig, SettingsError> {
        Ok(crm_bus::BusConfig {
            amqp_url: self.amqp_url.as_deref().map(SecretString::from),
            amqp_ca_pem: self.amqp_ca_cert.as_deref().map(read_text).transpose()?,
            prefix: self.queue_prefix.clone(),
            ephemeral: self.ephemeral_queues,
            queues: crate::module::suite_queues(suite),
        })
    }

    /// gRPC over TLS, when CRM_TLS_CERT and CRM_TLS_KEY are set; mutual when
    /// CRM_TLS_CLIENT_CA is.
    pub fn server_tls(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, SettingsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let identity = tonic::transport::Identity::from_pem(read_text(cert)?, read_text(key)?);
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(client_ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read_text(
                client_ca,
            )?));
        }
        Ok(Some(tls))
    }

    /// How this process calls another service of the suite over gRPC: TLS when
    /// its own server is TLS, trusting CRM_TLS_CA (else CRM_TLS_CLIENT_CA, else
    /// the system's roots), and presenting its certificate under mutual TLS.
    pub fn client_tls(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, SettingsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut tls = tonic::transport::ClientTlsConfig::new();
        tls = match self.tls_ca.as_ref().or(self.tls_client_ca.as_ref()) {
            Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(read_text(ca)?)),
            None => tls.with_native_roots(),
        };
        if self.tls_client_ca.is_some() {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read_text(cert)?,
                read_text(key)?,
            ));
        }
        Ok(Some(tls))
    }

    /// Business hours with the bank's holidays and make-up days; each branch
    /// counts them in its own time zone.
    pub fn business_calendar(&self) -> BusinessCalendar {
        BusinessCalendar {
            holidays: Arc::new(self.bank_holidays.iter().copied().collect()),
            extra_workdays: Arc::new(self.bank_workdays.iter().copied().collect()),
            time_zone: self.bank_time_zone,
            ..BusinessCalendar::default()
        }
    }

    /// Settings for an in-process app on port 0 (tests, the demo, benchmarks): the
    /// given stores, fresh secrets, ephemeral queues, default tiers.
    pub fn for_local_app(
        database_url: String,
        database_schema: Option<String>,
        amqp_url: Option<String>,
        queue_prefix: String,
        jwt_secret: String,
    ) -> Result<Settings, SettingsError> {
        Ok(Settings {
            services: Vec::new(),
            listen_addr: ([127, 0, 0, 1], 0).into(),
            metrics_addr: None,
            database_url: Some(database_url),
            database_schema,
            amqp_url,
            amqp_ca_cert: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_ca: None,
            queue_prefix,
            ephemeral_queues: true,
            jwt_secret: Some(SecretString::from(jwt_secret)),
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_max_lifetime_minutes: 720,
            pii_key: Some(Vault::generate_key()?),
            pii_previous_keys: Vec::new(),
            bank_holidays: Vec::new(),
            bank_workdays: Vec::new(),
            bank_time_zone: chrono_tz::Asia::Shanghai,
            // Tests and benchmarks run jobs when they mean to, never at 06:30.
            run_schedules: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    /// The flags as a command line would give them.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: super::Settings,
    }

    #[test]
    fn bank_holidays_and_workdays_make_the_calendar() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "crm",
            "--bank-holidays",
            "2026-10-01,2026-10-02",
            "--bank-workdays",
            "2026-10-10",
        ])
        .unwrap();
        let calendar = cli.settings.business_calendar();
        let date = |d| chrono::NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
        assert!(!calendar.is_business_day(date(1)), "a Thursday holiday");
        assert!(calendar.is_business_day(date(8)), "an ordinary Thursday");
        assert!(calendar.is_business_day(date(10)), "a make-up Saturday");
        assert!(!calendar.is_business_day(date(11)), "an ordinary Sunday");
        assert!(
            Cli::try_parse_from(["crm", "--bank-holidays", "1 October"]).is_err(),
            "dates are YYYY-MM-DD"
        );
    }

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
        assert_eq!(
            redact_url("amqp://u:secret1@node-1:5672,amqps://u:secret2@node-2:5671"),
            "amqp://u:***@node-1:5672,amqps://u:***@node-2:5671"
        );
    }
}
