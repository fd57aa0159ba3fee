//! Small conversions every service does at the wire: timestamps, dates and pages.

use chrono::{DateTime, Utc};

pub fn timestamp(value: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: value.timestamp(),
        nanos: i32::try_from(value.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn optional_timestamp(value: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    value.map(timestamp)
}

/// The earliest and latest time any request may name (1900-01-01 and the end of
/// 9999, UTC): every database keeps them, and date arithmetic on them (a window
/// before, a deadline after) cannot overflow.
pub const EARLIEST_SECONDS: i64 = -2_208_988_800;
pub const LATEST_SECONDS: i64 = 253_402_300_799;

/// A wire timestamp as UTC, or why not.
pub fn datetime(value: &prost_types::Timestamp) -> Result<DateTime<Utc>, &'static str> {
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .ok_or("nanos must be between 0 and 999,999,999")?;
    if !(EARLIEST_SECONDS..=LATEST_SECONDS).contains(&value.seconds) {
        return Err("must be between 1900-01-01 and 9999-12-31");
    }
    DateTime::from_timestamp(value.seconds, nanos).ok_or("is not a valid time")
}

/// A calendar date on the wire (`crm.v1.Date`).
pub fn date_to_proto(date: chrono::NaiveDate) -> crm_proto::v1::Date {
    use chrono::Datelike;
    crm_proto::v1::Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or(0),
        day: i32::try_from(date.day()).unwrap_or(0),
    }
}

/// A wire date as a calendar date, or why not.
pub fn date_from_proto(date: &crm_proto::v1::Date) -> Result<chrono::NaiveDate, &'static str> {
    let month = u32::try_from(date.month).map_err(|_| "month out of range")?;
    let day = u32::try_from(date.day).map_err(|_| "day out of range")?;
    chrono::NaiveDate::from_ymd_opt(date.year, month, day).ok_or("is not a calendar date")
}

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: i32 = 500;

/// API.md: `page_size` defaults to 50, at most 500.
pub fn page_size(requested: i32) -> Result<u64, String> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if (1..=MAX_PAGE_SIZE).contains(&size) => {
            Ok(u64::try_from(size).unwrap_or(DEFAULT_PAGE_SIZE))
        }
        _ => Err(format!("must be between 1 and {MAX_PAGE_SIZE}")),
    }
}

/// Cuts a keyset page: queries fetch `page_size + 1` rows, so an extra row means
/// there is a next page, whose token is the key of the last row kept.
pub fn into_page<T>(
    mut rows: Vec<T>,
    page_size: u64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let keep = usize::try_from(page_size).unwrap_or(usize::MAX);
    if rows.len() <= keep {
        return (rows, String::new());
    }
    rows.truncate(keep);
    let next_page_token = rows.last().map(key).unwrap_or_default();
    (rows, next_page_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_outside_1900_to_9999_are_refused() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        assert!(datetime(&at(EARLIEST_SECONDS)).is_ok());
        assert!(datetime(&at(LATEST_SECONDS)).is_ok());
        assert!(datetime(&at(EARLIEST_SECONDS - 1)).is_err());
        assert!(datetime(&at(LATEST_SECONDS + 1)).is_err());
        assert!(datetime(&at(i64::MAX)).is_err());
        assert!(datetime(&at(i64::MIN)).is_err());
        assert!(
            datetime(&prost_types::Timestamp {
                seconds: 0,
                nanos: 1_000_000_000
            })
            .is_err()
        );
    }

    #[test]
    fn timestamps_round_trip() {
        let now = Utc::now();
        assert_eq!(datetime(&timestamp(now)), Ok(now));
        assert!(
            datetime(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_err()
        );
    }

    #[test]
    fn an_extra_row_means_a_next_page_keyed_by_the_last_row_kept() {
        assert_eq!(
            into_page(vec![1, 2, 3], 2, |n| n.to_string()),
            (vec![1, 2], "2".to_owned())
        );
        assert_eq!(
            into_page(vec![1, 2], 2, |n| n.to_string()),
            (vec![1, 2], String::new())
        );
        assert_eq!(
            into_page(Vec::<i32>::new(), 2, |n| n.to_string()),
            (vec![], String::new())
        );
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0), Ok(50));
        assert_eq!(page_size(500), Ok(500));
        assert!(page_size(501).is_err());
        assert!(page_size(-1).is_err());
    }
}
