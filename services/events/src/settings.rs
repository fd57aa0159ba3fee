//! The events service's settings section.

/// Flags (each also a `CRM_*` variable) of the events service.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Events service")]
pub struct EventsSettings {
    /// Months of core-banking events kept: older monthly partitions are dropped by
    /// `crm jobs prune-events`, and an event older than this is refused.
    #[arg(
        long,
        env = "CRM_EVENT_RETENTION_MONTHS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u32).range(1..=240)
    )]
    pub event_retention_months: u32,
    /// Clients whose 30-day daily-average balance is above this many CNY are
    /// watched for a sudden drop.
    #[arg(
        long,
        env = "CRM_BALANCE_WATCH_THRESHOLD_CNY",
        default_value_t = 1_000_000,
        value_parser = clap::value_parser!(u64).range(0..=1_000_000_000_000)
    )]
    pub balance_watch_threshold_cny: u64,
    /// A watched client's closing balance falling by more than this percentage
    /// from the business day before raises an alert for their RM.
    #[arg(
        long,
        env = "CRM_BALANCE_DROP_PERCENT",
        default_value_t = 30,
        value_parser = clap::value_parser!(u8).range(1..=100)
    )]
    pub balance_drop_percent: u8,
    /// A transfer to another bank of at least this many CNY, PENDING on the feed,
    /// alerts the client's RM (as a counter's hold-and-notify does); one in from
    /// another bank gives the RM a follow-up.
    #[arg(
        long,
        env = "CRM_LARGE_TRANSFER_CNY",
        default_value_t = 500_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000)
    )]
    pub large_transfer_cny: u64,
    /// Events of a client the client book has not announced are held; held longer
    /// than this many minutes, `crm jobs feed-watch` reports the client.
    #[arg(
        long,
        env = "CRM_HELD_EVENT_ALERT_MINUTES",
        default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..=10_080)
    )]
    pub held_event_alert_minutes: u32,
    /// No event for this many minutes of business time (the bank's calendar) and
    /// `crm jobs feed-watch` reports the core-banking feed silent.
    #[arg(
        long,
        env = "CRM_FEED_SILENT_MINUTES",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..=1_440)
    )]
    pub feed_silent_minutes: u32,
    /// `crm jobs maturity-sweep` asks for a follow-up of every product maturing
    /// within this many days.
    #[arg(
        long,
        env = "CRM_MATURITY_SWEEP_DAYS",
        default_value_t = 14,
        value_parser = clap::value_parser!(u16).range(1..=92)
    )]
    pub maturity_sweep_days: u16,
    /// A maturity's follow-up is due this many days before the product matures.
    #[arg(
        long,
        env = "CRM_MATURITY_LEAD_DAYS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u16).range(0..=30)
    )]
    pub maturity_lead_days: u16,
    /// The client book's gRPC address (`http://clients:50051`), asked about a
    /// client a counter holds a transfer of before the book's announcement reached
    /// this service; unset: this process's own address (every service in one
    /// process).
    #[arg(long, env = "CRM_CLIENT_BOOK_URL")]
    pub client_book_url: Option<String>,
}

impl EventsSettings {
    pub fn watch_rules(
        &self,
        calendar: crm_domain::sla::BusinessCalendar,
    ) -> crate::balance_watch::WatchRules {
        crate::balance_watch::WatchRules {
            watch_threshold_minor: i64::try_from(self.balance_watch_threshold_cny)
                .unwrap_or(i64::MAX / 100)
                .saturating_mul(100),
            drop_percent: self.balance_drop_percent,
            calendar,
            large_transfer_minor: i64::try_from(self.large_transfer_cny)
                .unwrap_or(i64::MAX / 100)
                .saturating_mul(100),
        }
    }
}

impl crm_runtime::SettingsSection for EventsSettings {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
