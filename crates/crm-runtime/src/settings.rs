use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use crm_auth::JwtKeys;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_domain::tier::{TierPolicy, TierThresholds};
use crm_store::Vault;
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
    /// 32 random bytes, base64 (`openssl rand -base64 32`): seals national ids and
    /// phone numbers at rest and keys their lookup hashes and page tokens.
    #[arg(long, env = "CRM_PII_KEY", hide_env_values = true)]
    pub pii_key: Option<String>,
    /// Lower bounds of TIER_WEALTH, TIER_HNW and TIER_PRIVATE, in CNY of 30-day
    /// daily-average AUM.
    #[arg(
        long,
        env = "CRM_TIER_THRESHOLDS_CNY",
        value_delimiter = ',',
        num_args = 3,
        default_values_t = [1_000_000, 5_000_000, 10_000_000]
    )]
    pub tier_thresholds_cny: Vec<i64>,
    /// How far (percent) below its tier's lower bound a client's average may fall
    /// before the tier drops (see the README's tier rule).
    #[arg(
        long,
        env = "CRM_TIER_HYSTERESIS_PERCENT",
        default_value_t = 5,
        value_parser = clap::value_parser!(u8).range(0..=50)
    )]
    pub tier_hysteresis_percent: u8,
    /// Acceptance deadlines of URGENT, HIGH, NORMAL and LOW referrals, in business
    /// minutes of the branch's calendar; unset: 120, 240, one business day, one
    /// business day.
    #[arg(
        long,
        env = "CRM_REFERRAL_SLA_MINUTES",
        value_delimiter = ',',
        num_args = 4
    )]
    pub referral_sla_minutes: Option<Vec<i64>>,
    /// Days an open referral may go unchanged before `crm jobs referral-sla`
    /// expires it.
    #[arg(
        long,
        env = "CRM_REFERRAL_EXPIRE_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u16).range(1..=3650)
    )]
    pub referral_expire_days: u16,
    /// Weekdays the bank is closed (YYYY-MM-DD, local dates), e.g. the Spring
    /// Festival and National Day holidays: SLA clocks don't run on them.
    #[arg(long, env = "CRM_BANK_HOLIDAYS", value_delimiter = ',')]
    pub bank_holidays: Vec<NaiveDate>,
    /// Weekend days the bank works instead (YYYY-MM-DD): SLA clocks run on them.
    #[arg(long, env = "CRM_BANK_WORKDAYS", value_delimiter = ',')]
    pub bank_workdays: Vec<NaiveDate>,
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
            .field("pii_key", &self.pii_key.as_ref().map(|_| "***"))
            .field("tier_thresholds_cny", &self.tier_thresholds_cny)
            .field("tier_hysteresis_percent", &self.tier_hysteresis_percent)
            .field("referral_sla_minutes", &self.referral_sla_minutes)
            .field("referral_expire_days", &self.referral_expire_days)
            .field("bank_holidays", &self.bank_holidays)
            .field("bank_workdays", &self.bank_workdays)
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
    #[error("CRM_PII_KEY must be set: 32 random bytes, base64 (`openssl rand -base64 32`)")]
    NoPiiKey,
    #[error(transparent)]
    PiiKey(#[from] crm_store::VaultError),
    #[error(
        "referral SLA minutes must be four positive numbers (urgent, high, normal, low), got {0:?}"
    )]
    ReferralSla(Vec<i64>),
    #[error("tier thresholds must be three positive amounts in rising order, got {0:?}")]
    TierThresholds(Vec<i64>),
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

impl Settings {
    pub fn vault(&self) -> Result<Arc<Vault>, SettingsError> {
        let key = self.pii_key.clone().ok_or(SettingsError::NoPiiKey)?;
        Ok(Arc::new(Vault::from_base64(&SecretString::from(key))?))
    }

    pub fn tier_policy(&self) -> Result<TierPolicy, SettingsError> {
        let fen = |yuan: i64| yuan.checked_mul(100);
        let bad = || SettingsError::TierThresholds(self.tier_thresholds_cny.clone());
        let [wealth, hnw, private] = self.tier_thresholds_cny[..] else {
            return Err(bad());
        };
        if !(0 < wealth && wealth < hnw && hnw < private) {
            return Err(bad());
        }
        Ok(TierPolicy {
            thresholds: TierThresholds {
                wealth: fen(wealth).ok_or_else(bad)?,
                hnw: fen(hnw).ok_or_else(bad)?,
                private: fen(private).ok_or_else(bad)?,
            },
            hysteresis_percent: self.tier_hysteresis_percent,
        })
    }

    /// Business hours with the bank's holidays and make-up days; each branch
    /// counts them in its own time zone.
    pub fn business_calendar(&self) -> BusinessCalendar {
        BusinessCalendar {
            holidays: Arc::new(self.bank_holidays.iter().copied().collect()),
            extra_workdays: Arc::new(self.bank_workdays.iter().copied().collect()),
            ..BusinessCalendar::default()
        }
    }

    pub fn referral_sla(&self) -> Result<SlaPolicy, SettingsError> {
        match self.referral_sla_minutes.as_deref() {
            None => Ok(SlaPolicy::default()),
            Some(&[urgent, high, normal, low])
                if [urgent, high, normal, low].iter().all(|m| *m > 0) =>
            {
                Ok(SlaPolicy {
                    urgent_minutes: urgent,
                    high_minutes: high,
                    normal_minutes: normal,
                    low_minutes: low,
                })
            }
            Some(other) => Err(SettingsError::ReferralSla(other.to_vec())),
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
        use secrecy::ExposeSecret;
        Ok(Settings {
            listen_addr: ([127, 0, 0, 1], 0).into(),
            database_url: Some(database_url),
            database_schema,
            amqp_url,
            queue_prefix,
            ephemeral_queues: true,
            jwt_secret: Some(jwt_secret),
            jwt_public_key: None,
            pii_key: Some(Vault::generate_key()?.expose_secret().to_owned()),
            tier_thresholds_cny: vec![1_000_000, 5_000_000, 10_000_000],
            tier_hysteresis_percent: 5,
            referral_sla_minutes: None,
            referral_expire_days: 30,
            bank_holidays: Vec::new(),
            bank_workdays: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn referral_sla_minutes_are_four_positive_numbers() {
        let mut settings = super::Settings::for_local_app(
            "sqlite::memory:".into(),
            None,
            None,
            String::new(),
            "secret".into(),
        )
        .unwrap();
        assert_eq!(
            settings.referral_sla().unwrap(),
            super::SlaPolicy::default()
        );
        settings.referral_sla_minutes = Some(vec![60, 120, 240, 480]);
        let policy = settings.referral_sla().unwrap();
        assert_eq!((policy.urgent_minutes, policy.low_minutes), (60, 480));
        settings.referral_sla_minutes = Some(vec![60, 0, 240, 480]);
        assert!(settings.referral_sla().is_err());
    }

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
    }
}
