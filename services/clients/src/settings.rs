//! The clients service's settings section: the bank's tiering rule.

use crm_domain::tier::{TierPolicy, TierThresholds};

/// Flags (each also a `CRM_*` variable) of the clients service.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Clients service")]
pub struct ClientsSettings {
    /// Lower bounds of TIER_WEALTH, TIER_HNW and TIER_PRIVATE, in CNY of 30-day
    /// daily-average AUM.
    #[arg(
        long,
        env = "CRM_TIER_THRESHOLDS_CNY",
        value_delimiter = ',',
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
}

impl ClientsSettings {
    /// The tiering rule these settings describe.
    pub fn tier_policy(&self) -> Result<TierPolicy, String> {
        let bad = || {
            format!(
                "CRM_TIER_THRESHOLDS_CNY must be three positive amounts in rising order, got {:?}",
                self.tier_thresholds_cny
            )
        };
        let [wealth, hnw, private] = self.tier_thresholds_cny[..] else {
            return Err(bad());
        };
        if !(0 < wealth && wealth < hnw && hnw < private) {
            return Err(bad());
        }
        let fen = |yuan: i64| yuan.checked_mul(100).ok_or_else(bad);
        Ok(TierPolicy {
            thresholds: TierThresholds {
                wealth: fen(wealth)?,
                hnw: fen(hnw)?,
                private: fen(private)?,
            },
            hysteresis_percent: self.tier_hysteresis_percent,
        })
    }
}

impl crm_runtime::SettingsSection for ClientsSettings {
    fn validate(&self) -> Result<(), String> {
        self.tier_policy().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientsSettings;
    use crm_runtime::{ModuleSettings, SettingsSection};

    fn parse(args: &[&str]) -> Result<ClientsSettings, crm_runtime::SettingsError> {
        ModuleSettings::parse_from(&[&crate::Module], args)?.section()
    }

    #[test]
    fn tier_thresholds_default_to_the_banks_rule() {
        let policy = parse(&[]).unwrap().tier_policy().unwrap();
        assert_eq!(policy.thresholds.wealth, 100_000_000);
        assert_eq!(policy.thresholds.private, 1_000_000_000);
        assert_eq!(policy.hysteresis_percent, 5);
    }

    #[test]
    fn tier_thresholds_must_rise() {
        let error = parse(&["--tier-thresholds-cny", "5000000,1000000,10000000"]).unwrap_err();
        assert!(
            error.to_string().contains("CRM_TIER_THRESHOLDS_CNY"),
            "{error}"
        );
        assert!(parse(&["--tier-thresholds-cny", "0,1,2"]).is_err());
        let huge = i64::MAX.to_string();
        let rising = format!("1,2,{huge}");
        assert!(
            parse(&["--tier-thresholds-cny", &rising]).is_err(),
            "overflow in fen"
        );
        assert!(
            ClientsSettings {
                tier_thresholds_cny: vec![1, 2],
                tier_hysteresis_percent: 5
            }
            .validate()
            .is_err()
        );
    }
}
