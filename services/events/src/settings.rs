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
}

impl crm_runtime::SettingsSection for EventsSettings {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
