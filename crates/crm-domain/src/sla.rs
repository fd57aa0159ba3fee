//! Acceptance deadlines counted in business hours of a branch's calendar.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::referral::Priority;

/// Acceptance deadlines per priority, in business minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaPolicy {
    pub urgent_minutes: i64,
    pub high_minutes: i64,
    pub normal_minutes: i64,
    pub low_minutes: i64,
}

/// The hours a branch counts as business time, Monday to Friday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessCalendar {
    pub time_zone: Tz,
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

impl Default for SlaPolicy {
    /// API.md: URGENT 2 h, HIGH 4 h, NORMAL and LOW one business day.
    fn default() -> Self {
        let business_day = BusinessCalendar::default().minutes_per_day();
        Self {
            urgent_minutes: 120,
            high_minutes: 240,
            normal_minutes: business_day,
            low_minutes: business_day,
        }
    }
}

impl SlaPolicy {
    pub fn minutes_for(&self, priority: Priority) -> i64 {
        match priority {
            Priority::Urgent => self.urgent_minutes,
            Priority::High => self.high_minutes,
            Priority::Normal => self.normal_minutes,
            Priority::Low => self.low_minutes,
        }
    }
}

impl Default for BusinessCalendar {
    fn default() -> Self {
        Self {
            time_zone: chrono_tz::Asia::Shanghai,
            opens: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            closes: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

impl BusinessCalendar {
    pub fn minutes_per_day(&self) -> i64 {
        (self.closes - self.opens).num_minutes().max(1)
    }

    fn is_business_day(weekday: Weekday) -> bool {
        !matches!(weekday, Weekday::Sat | Weekday::Sun)
    }

    /// The instant `business_minutes` of open time after `start`.
    pub fn add_business_minutes(
        &self,
        start: DateTime<Utc>,
        business_minutes: i64,
    ) -> DateTime<Utc> {
        let mut remaining = business_minutes.max(0);
        let mut cursor = start.with_timezone(&self.time_zone);
        // A deadline is at most a few business days away: bound the walk anyway.
        for _ in 0..3660 {
            let date = cursor.date_naive();
            let day_open = self.local(date.and_time(self.opens));
            let day_close = self.local(date.and_time(self.closes));
            if let (true, Some(open), Some(close)) =
                (Self::is_business_day(date.weekday()), day_open, day_close)
            {
                let from = if cursor < open { open } else { cursor };
                if from < close {
                    let available = (close - from).num_minutes();
                    if remaining <= available {
                        return (from + Duration::minutes(remaining)).with_timezone(&Utc);
                    }
                    remaining -= available;
                }
            }
            let Some(next) = date
                .succ_opt()
                .and_then(|d| self.local(d.and_time(NaiveTime::MIN)))
            else {
                break;
            };
            cursor = next;
        }
        start + Duration::minutes(business_minutes)
    }

    fn local(&self, naive: chrono::NaiveDateTime) -> Option<DateTime<Tz>> {
        self.time_zone.from_local_datetime(&naive).earliest()
    }
}

/// When a referral of `priority` created at `created_at` must be accepted by.
pub fn acceptance_deadline(
    policy: &SlaPolicy,
    calendar: &BusinessCalendar,
    priority: Priority,
    created_at: DateTime<Utc>,
) -> DateTime<Utc> {
    calendar.add_business_minutes(created_at, policy.minutes_for(priority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn urgent_within_the_same_business_day() {
        // Thursday 2026-11-26 10:00 Shanghai.
        let due = acceptance_deadline(
            &SlaPolicy::default(),
            &BusinessCalendar::default(),
            Priority::Urgent,
            shanghai(2026, 11, 26, 10, 0),
        );
        assert_eq!(due, shanghai(2026, 11, 26, 12, 0));
    }

    #[test]
    fn a_friday_afternoon_referral_runs_into_monday() {
        // Friday 16:00 + 4 business hours = Monday 12:00.
        let due = acceptance_deadline(
            &SlaPolicy::default(),
            &BusinessCalendar::default(),
            Priority::High,
            shanghai(2026, 11, 27, 16, 0),
        );
        assert_eq!(due, shanghai(2026, 11, 30, 12, 0));
    }

    #[test]
    fn a_normal_referral_at_night_is_due_at_the_next_close() {
        let due = acceptance_deadline(
            &SlaPolicy::default(),
            &BusinessCalendar::default(),
            Priority::Normal,
            shanghai(2026, 11, 26, 22, 0),
        );
        assert_eq!(due, shanghai(2026, 11, 27, 17, 0));
    }
}
