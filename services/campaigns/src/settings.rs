//! The campaigns service's settings section.

/// Flags (each also a `CRM_*` variable) of the campaigns service.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Campaigns service")]
pub struct CampaignsSettings {
    /// A launch by a person of more tasks than this waits for a second campaign
    /// admin's ApproveCampaignLaunch (maker-checker). The scheduled jobs'
    /// campaigns are the bank's standing policy and launch without it.
    #[arg(
        long,
        env = "CRM_CAMPAIGN_APPROVAL_THRESHOLD",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(1..=100_000_000)
    )]
    pub campaign_approval_threshold: u64,
    /// Upgrade candidates: clients whose 30-day average lies within this share
    /// (percent) below the next tier's threshold (20: 4M–5M CNY before HNW).
    #[arg(
        long,
        env = "CRM_UPGRADE_CANDIDATE_PERCENT",
        default_value_t = 20,
        value_parser = clap::value_parser!(u8).range(1..=90)
    )]
    pub upgrade_candidate_percent: u8,
    /// Days of the quarter, from its first, in which the quarterly HNW campaign's
    /// clients are to be contacted (its tasks are due at the end).
    #[arg(
        long,
        env = "CRM_QUARTERLY_HNW_WINDOW_DAYS",
        default_value_t = 45,
        value_parser = clap::value_parser!(u16).range(1..=92)
    )]
    pub quarterly_hnw_window_days: u16,
    /// Days of the year, from 1 January, for the yearly campaign's contacts.
    #[arg(
        long,
        env = "CRM_ANNUAL_CAMPAIGN_WINDOW_DAYS",
        default_value_t = 90,
        value_parser = clap::value_parser!(u16).range(1..=366)
    )]
    pub annual_campaign_window_days: u16,
    /// Contact cadence: days without a contact after which a PRIVATE, HNW and
    /// WEALTH client gets a follow-up for their RM.
    #[arg(
        long,
        env = "CRM_CONTACT_CADENCE_DAYS",
        value_delimiter = ',',
        default_values_t = [30, 60, 90]
    )]
    pub contact_cadence_days: Vec<u16>,
    /// Days an RM has for a contact-cadence follow-up.
    #[arg(
        long,
        env = "CRM_CONTACT_FOLLOW_UP_DAYS",
        default_value_t = 14,
        value_parser = clap::value_parser!(u16).range(1..=90)
    )]
    pub contact_follow_up_days: u16,
}

/// Days without contact after which a client of each tier is followed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub private: i64,
    pub hnw: i64,
    pub wealth: i64,
}

impl CampaignsSettings {
    pub fn cadence(&self) -> Result<Cadence, String> {
        match self.contact_cadence_days[..] {
            [private, hnw, wealth] if private > 0 && hnw > 0 && wealth > 0 => Ok(Cadence {
                private: i64::from(private),
                hnw: i64::from(hnw),
                wealth: i64::from(wealth),
            }),
            _ => Err(format!(
                "CRM_CONTACT_CADENCE_DAYS must be three positive day counts (private, hnw, wealth), got {:?}",
                self.contact_cadence_days
            )),
        }
    }
}

impl crm_runtime::SettingsSection for CampaignsSettings {
    fn validate(&self) -> Result<(), String> {
        self.cadence().map(drop)
    }
}
