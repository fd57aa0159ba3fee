//! The referrals service's settings section: acceptance deadlines and expiry.

use crm_domain::sla::SlaPolicy;

/// Flags (each also a `CRM_*` variable) of the referrals service.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Referrals service")]
pub struct ReferralsSettings {
    /// Acceptance deadlines of URGENT, HIGH, NORMAL and LOW referrals, in business
    /// minutes of the branch's calendar; unset: 120, 240, one business day, one
    /// business day.
    #[arg(long, env = "CRM_REFERRAL_SLA_MINUTES", value_delimiter = ',')]
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
    /// Minutes a referral may wait for routing (its branch has nobody routing
    /// can give it to) before `crm jobs referral-sla` reports the branch.
    #[arg(
        long,
        env = "CRM_REFERRAL_UNROUTED_ALERT_MINUTES",
        default_value_t = 15,
        value_parser = clap::value_parser!(u32).range(1..=10_080)
    )]
    pub referral_unrouted_alert_minutes: u32,
    /// Live work-item streams one person may hold open at once (phone, tablet,
    /// a reconnect overlapping the old stream); more are refused.
    #[arg(
        long,
        env = "CRM_WATCH_STREAMS_PER_STAFF",
        default_value_t = 5,
        value_parser = clap::value_parser!(u16).range(1..=100)
    )]
    pub watch_streams_per_staff: u16,
    /// Live work-item streams one process serves at once; more are refused (the
    /// client reconnects to another replica). A stream costs the process a few
    /// kilobytes and the broker nothing: all share the process's one live queue.
    #[arg(
        long,
        env = "CRM_WATCH_STREAMS_TOTAL",
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub watch_streams_total: u32,
}

/// A year of business minutes (8 hours, 260 days): a deadline further out is a
/// typo, and would make every deadline's arithmetic overflow a date.
const MAX_SLA_MINUTES: i64 = 8 * 60 * 260;

impl ReferralsSettings {
    /// The acceptance deadlines these settings describe.
    pub fn referral_sla(&self) -> Result<SlaPolicy, String> {
        match self.referral_sla_minutes.as_deref() {
            None => Ok(SlaPolicy::default()),
            Some(&[urgent, high, normal, low])
                if [urgent, high, normal, low]
                    .iter()
                    .all(|m| (1..=MAX_SLA_MINUTES).contains(m)) =>
            {
                Ok(SlaPolicy {
                    urgent_minutes: urgent,
                    high_minutes: high,
                    normal_minutes: normal,
                    low_minutes: low,
                })
            }
            Some(other) => Err(format!(
                "CRM_REFERRAL_SLA_MINUTES must be four numbers from 1 to {MAX_SLA_MINUTES} (urgent, high, normal, low), got {other:?}"
            )),
        }
    }

    pub fn unrouted_alert_after(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.referral_unrouted_alert_minutes.into())
    }

    pub fn expire_after(&self) -> chrono::Duration {
        chrono::Duration::days(self.referral_expire_days.into())
    }
}

impl crm_runtime::SettingsSection for ReferralsSettings {
    fn validate(&self) -> Result<(), String> {
        self.referral_sla().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::ReferralsSettings;
    use crm_runtime::ModuleSettings;

    fn parse(args: &[&str]) -> Result<ReferralsSettings, crm_runtime::SettingsError> {
        ModuleSettings::parse_from(&[&crate::Module], args)?.section()
    }

    #[test]
    fn referral_sla_minutes_are_four_positive_numbers() {
        let settings = parse(&[]).unwrap();
        assert_eq!(
            settings.referral_sla().unwrap(),
            crm_domain::sla::SlaPolicy::default()
        );
        let policy = parse(&["--referral-sla-minutes", "60,120,240,480"])
            .unwrap()
            .referral_sla()
            .unwrap();
        assert_eq!((policy.urgent_minutes, policy.low_minutes), (60, 480));
        let error = parse(&["--referral-sla-minutes", "60,0,240,480"]).unwrap_err();
        assert!(
            error.to_string().contains("CRM_REFERRAL_SLA_MINUTES"),
            "{error}"
        );
        assert!(parse(&["--referral-sla-minutes", "60,120"]).is_err());
        let huge = format!("60,120,240,{}", i64::MAX);
        assert!(parse(&["--referral-sla-minutes", &huge]).is_err());
    }

    #[test]
    fn expiry_is_between_one_day_and_ten_years() {
        assert_eq!(
            parse(&[]).unwrap().expire_after(),
            chrono::Duration::days(30)
        );
        assert!(parse(&["--referral-expire-days", "0"]).is_err());
        assert!(parse(&["--referral-expire-days", "3651"]).is_err());
    }
}
