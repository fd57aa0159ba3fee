//! Campaigns: their kinds and states, the bank's quarters, and the key that makes
//! a campaign task once per (campaign, client).

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

text_enum!(
    CampaignKind {
        QuarterlyHnw => "quarterly_hnw",
        Annual => "annual",
        Maturity => "maturity",
        ContactCadence => "contact_cadence",
        Custom => "custom",
    }
);

text_enum!(
    /// DRAFT → LAUNCHED → CLOSED, or → CANCELLED (its open tasks closed).
    CampaignStatus {
        Draft => "draft",
        Launched => "launched",
        Closed => "closed",
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// A task as the campaign sees it: open on its RM's queue, done with an
    /// outcome, or withdrawn by a cancel.
    TaskState {
        Open => "open",
        Done => "done",
        Withdrawn => "withdrawn",
    }
);

/// A calendar quarter of the bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarter {
    pub year: i32,
    /// 1..=4
    pub quarter: u32,
}

impl Quarter {
    pub fn of(date: NaiveDate) -> Quarter {
        Quarter {
            year: date.year(),
            quarter: date.month0() / 3 + 1,
        }
    }

    /// The quarter `instant` falls in, in the bank's time zone: 23:30 UTC on 31
    /// March is already 1 April in Shanghai, so the second quarter.
    pub fn at(instant: DateTime<Utc>, time_zone: Tz) -> Quarter {
        Quarter::of(instant.with_timezone(&time_zone).date_naive())
    }

    pub fn first_day(self) -> Option<NaiveDate> {
        if !(1..=4).contains(&self.quarter) {
            return None;
        }
        NaiveDate::from_ymd_opt(self.year, self.quarter * 3 - 2, 1)
    }

    /// Midnight starting the quarter after it, in `time_zone`: its end.
    pub fn ends_at(self, time_zone: Tz) -> Option<DateTime<Utc>> {
        let next = Quarter {
            year: self.year + i32::from(self.quarter == 4),
            quarter: self.quarter % 4 + 1,
        };
        next.starts_at(time_zone)
    }

    /// Midnight of its first day in `time_zone`, as an instant.
    pub fn starts_at(self, time_zone: Tz) -> Option<DateTime<Utc>> {
        let midnight = self.first_day()?.and_hms_opt(0, 0, 0)?;
        Some(
            time_zone
                .from_local_datetime(&midnight)
                .earliest()?
                .with_timezone(&Utc),
        )
    }
}

/// Midnight of 1 January of `year` in `time_zone`.
pub fn year_starts_at(year: i32, time_zone: Tz) -> Option<DateTime<Utc>> {
    let midnight = NaiveDate::from_ymd_opt(year, 1, 1)?.and_hms_opt(0, 0, 0)?;
    Some(
        time_zone
            .from_local_datetime(&midnight)
            .earliest()?
            .with_timezone(&Utc),
    )
}

const PREFIX: &str = "campaign";

/// The work-item source key of a campaign's task for a client. `round` is empty
/// for campaigns of one task per client; a contact-cadence follow-up names the
/// day the contact fell due, so the same overdue contact is never asked twice.
pub fn task_source_key(campaign_id: &str, client_id: &str, round: &str) -> String {
    if round.is_empty() {
        format!("{PREFIX}:{campaign_id}:{client_id}")
    } else {
        format!("{PREFIX}:{campaign_id}:{client_id}:{round}")
    }
}

/// (campaign, client, round) of a task's source key; none for another key.
pub fn parse_task_source_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(4, ':');
    if parts.next()? != PREFIX {
        return None;
    }
    let campaign_id = parts.next().filter(|part| !part.is_empty())?;
    let client_id = parts.next().filter(|part| !part.is_empty())?;
    Some((campaign_id, client_id, parts.next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_are_the_bank_local_ones() {
        let shanghai = chrono_tz::Asia::Shanghai;
        let cases = [
            // (UTC instant, year, quarter in Shanghai)
            ("2026-03-31T15:59:59Z", 2026, 1),
            ("2026-03-31T16:00:00Z", 2026, 2),
            ("2026-03-31T23:30:00Z", 2026, 2),
            ("2026-06-30T23:30:00Z", 2026, 3),
            ("2026-09-30T23:30:00Z", 2026, 4),
            ("2026-12-31T23:30:00Z", 2027, 1),
            ("2026-12-31T15:00:00Z", 2026, 4),
        ];
        for (instant, year, quarter) in cases {
            let instant: DateTime<Utc> = instant.parse().unwrap();
            assert_eq!(
                Quarter::at(instant, shanghai),
                Quarter { year, quarter },
                "{instant}"
            );
        }
        let q2 = Quarter {
            year: 2026,
            quarter: 2,
        };
        assert_eq!(
            q2.starts_at(shanghai).unwrap().to_rfc3339(),
            "2026-03-31T16:00:00+00:00"
        );
        assert_eq!(
            Quarter {
                year: 2026,
                quarter: 4
            }
            .ends_at(shanghai)
            .unwrap()
            .to_rfc3339(),
            "2026-12-31T16:00:00+00:00"
        );
        assert_eq!(
            year_starts_at(2027, shanghai).unwrap().to_rfc3339(),
            "2026-12-31T16:00:00+00:00"
        );
    }

    #[test]
    fn task_keys_round_trip() {
        let cases = [("0190-c", "C-001", ""), ("0190-c", "C-001", "2026-11-01")];
        for (campaign, client, round) in cases {
            let key = task_source_key(campaign, client, round);
            assert_eq!(parse_task_source_key(&key), Some((campaign, client, round)));
        }
        for other in [
            "alert:1",
            "campaign:",
            "campaign:x",
            "campaign::C-1",
            "x:y:z",
        ] {
            assert_eq!(parse_task_source_key(other), None, "{other}");
        }
    }
}
