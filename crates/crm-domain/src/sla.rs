//! Acceptance deadlines counted in business hours of a branch's calendar.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
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

/// The hours a branch counts as business time: Monday to Friday in its time zone,
/// less the bank's holidays, plus the weekend days it works instead (China moves
/// working days around its long holidays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    pub time_zone: Tz,
    pub opens: NaiveTime,
    pub closes: NaiveTime,
    /// Local dates the bank is closed although they are weekdays.
    pub holidays: Arc<BTreeSet<NaiveDate>>,
    /// Local dates the bank is open although they fall on a weekend.
    pub extra_workdays: Arc<BTreeSet<NaiveDate>>,
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
            holidays: Arc::default(),
            extra_workdays: Arc::default(),
        }
    }
}

impl BusinessCalendar {
    pub fn minutes_per_day(&self) -> i64 {
        (self.closes - self.opens).num_minutes().max(1)
    }

    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        if self.extra_workdays.contains(&date) {
            return true;
        }
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&date)
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
                (self.is_business_day(date), day_open, day_close)
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
            let Some(next) = date.succ_opt().and_then(|d| self.start_of(d)) else {
                break;
            };
            cursor = next;
        }
        start + Duration::minutes(business_minutes)
    }

    /// Open time between `start` and `end`, in whole minutes (0 when `end` is not
    /// after `start`): how long something went unanswered, counting only the
    /// hours the bank works.
    pub fn business_minutes_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        let mut minutes = 0;
        let mut cursor = start.with_timezone(&self.time_zone);
        let end = end.with_timezone(&self.time_zone);
        // Bounded like add_business_minutes: ten years of days at most.
        for _ in 0..3660 {
            if cursor >= end {
                break;
            }
            let date = cursor.date_naive();
            let day_open = self.local(date.and_time(self.opens));
            let day_close = self.local(date.and_time(self.closes));
            if let (true, Some(open), Some(close)) =
                (self.is_business_day(date), day_open, day_close)
            {
                let from = cursor.max(open);
                let to = end.min(close);
                if from < to {
                    minutes += (to - from).num_minutes();
                }
            }
            let Some(next) = date.succ_opt().and_then(|d| self.start_of(d)) else {
                break;
            };
            cursor = next;
        }
        minutes
    }

    fn local(&self, naive: chrono::NaiveDateTime) -> Option<DateTime<Tz>> {
        self.time_zone.from_local_datetime(&naive).earliest()
    }

    /// The first instant of a local date. Where a daylight-saving change skips
    /// midnight (America/Santiago, for one), the day starts at the first hour
    /// that exists.
    fn start_of(&self, date: NaiveDate) -> Option<DateTime<Tz>> {
        (0..24).find_map(|hour| {
            NaiveTime::from_hms_opt(hour, 0, 0).and_then(|time| self.local(date.and_time(time)))
        })
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

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[test]
    fn holidays_are_skipped_and_makeup_saturdays_count() {
        // National Day 2026: Thu 1 Oct to Wed 7 Oct closed; Sat 10 Oct worked.
        let calendar = BusinessCalendar {
            holidays: Arc::new((1..=7).map(|d| date(2026, 10, d)).collect()),
            extra_workdays: Arc::new([date(2026, 10, 10)].into()),
            ..BusinessCalendar::default()
        };
        // Wednesday 30 Sep 16:00 + 4 business hours: one hour that day, three on
        // Thursday 8 Oct.
        let due = acceptance_deadline(
            &SlaPolicy::default(),
            &calendar,
            Priority::High,
            shanghai(2026, 9, 30, 16, 0),
        );
        assert_eq!(due, shanghai(2026, 10, 8, 12, 0));
        // Friday 9 Oct 16:00 + 4 business hours: the make-up Saturday.
        let due = acceptance_deadline(
            &SlaPolicy::default(),
            &calendar,
            Priority::High,
            shanghai(2026, 10, 9, 16, 0),
        );
        assert_eq!(due, shanghai(2026, 10, 10, 12, 0));
    }

    #[test]
    fn business_minutes_between_count_only_open_hours() {
        let calendar = BusinessCalendar::default();
        let shanghai = |y, m, d, h, min| {
            chrono_tz::Asia::Shanghai
                .with_ymd_and_hms(y, m, d, h, min, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        // Friday 16:30 to Monday 09:45: 30 minutes Friday, 45 Monday.
        assert_eq!(
            calendar.business_minutes_between(
                shanghai(2026, 11, 27, 16, 30),
                shanghai(2026, 11, 30, 9, 45)
            ),
            75
        );
        // A Saturday afternoon: none.
        assert_eq!(
            calendar.business_minutes_between(
                shanghai(2026, 11, 28, 12, 0),
                shanghai(2026, 11, 28, 16, 0)
            ),
            0
        );
        // Inside one day, and backwards.
        let (from, to) = (shanghai(2026, 11, 26, 10, 0), shanghai(2026, 11, 26, 11, 5));
        assert_eq!(calendar.business_minutes_between(from, to), 65);
        assert_eq!(calendar.business_minutes_between(to, from), 0);
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_still_counts_business_hours() {
        // Chile moves its clocks forward at 00:00 on Sunday 6 Sep 2026: that
        // midnight never happens. Friday 4 Sep 16:00 + 4 business hours is Monday
        // 7 Sep 12:00 local, not four plain hours later.
        let santiago = BusinessCalendar {
            time_zone: chrono_tz::America::Santiago,
            ..BusinessCalendar::default()
        };
        let friday = chrono_tz::America::Santiago
            .with_ymd_and_hms(2026, 9, 4, 16, 0, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let monday_noon = chrono_tz::America::Santiago
            .with_ymd_and_hms(2026, 9, 7, 12, 0, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let due = acceptance_deadline(&SlaPolicy::default(), &santiago, Priority::High, friday);
        assert_eq!(due, monday_noon);
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
