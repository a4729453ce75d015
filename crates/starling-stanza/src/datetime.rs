//! XEP-0082 (XMPP Date and Time Profiles, 1.1.1) DateTime: Unix time written as
//! `CCYY-MM-DDThh:mm:ss[.sss]Z` and read back from any DateTime the profile allows.
//!
//! The one copy of the civil-date arithmetic in Starling (Howard Hinnant's era-based
//! conversion: 400-year eras of 146097 days, years starting in March so the leap day comes
//! last). Nothing here reads the clock; callers pass the instant.

/// Why [`parse_ms`] refused a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    /// Not a XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`).
    #[error("not a XEP-0082 DateTime")]
    Malformed,
    /// A DateTime before 1970-01-01T00:00:00Z, or too far ahead for a `u64` of milliseconds.
    #[error("the DateTime is outside the range of Unix milliseconds")]
    OutOfRange,
}

/// A UTC instant split into its calendar fields (proleptic Gregorian calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// The year; negative before year 0.
    pub year: i64,
    /// 1 to 12.
    pub month: u8,
    /// 1 to 31.
    pub day: u8,
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59.
    pub second: u8,
}

impl UtcTime {
    /// The fields of `unix_seconds` (negative before 1970).
    pub fn from_unix_seconds(unix_seconds: i64) -> Self {
        let (year, month, day) = civil_from_days(unix_seconds.div_euclid(SECONDS_PER_DAY));
        let of_day = unix_seconds.rem_euclid(SECONDS_PER_DAY);
        Self {
            year,
            month,
            day,
            hour: small(of_day / 3600),
            minute: small(of_day % 3600 / 60),
            second: small(of_day % 60),
        }
    }
}

/// `CCYY-MM-DDThh:mm:ssZ` (XEP-0082 §3.3), as XEP-0202's `<utc/>` carries it.
pub fn format_seconds(unix_seconds: u64) -> String {
    let time = from_unsigned_seconds(unix_seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year, time.month, time.day, time.hour, time.minute, time.second
    )
}

/// `CCYY-MM-DDThh:mm:ss.sssZ`, always with milliseconds, so a stamp read back with
/// [`parse_ms`] gives the same instant.
pub fn format_ms(unix_ms: u64) -> String {
    let time = from_unsigned_seconds(unix_ms / 1000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year,
        time.month,
        time.day,
        time.hour,
        time.minute,
        time.second,
        unix_ms % 1000
    )
}

/// Milliseconds since the Unix epoch of a XEP-0082 DateTime,
/// `CCYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)` (§3.2). Digits of the fraction past the
/// millisecond are dropped; an offset is applied, so `01:00:00+01:00` is `00:00:00Z`.
pub fn parse_ms(text: &str) -> Result<u64, DateTimeError> {
    use DateTimeError::{Malformed, OutOfRange};
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| digits(text.get(range));
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, byte)| bytes.get(at) != Some(&byte))
    {
        return Err(Malformed);
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // 60 seconds: a leap second, which Unix time folds into the next minute.
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(Malformed);
    }
    let mut rest = text.get(19..).ok_or(Malformed)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(Malformed);
        }
        let kept = fraction.get(..digits.min(3)).ok_or(Malformed)?;
        millis = format!("{kept:0<3}").parse().map_err(|_| Malformed)?;
        rest = fraction.get(digits..).ok_or(Malformed)?;
    }
    let offset_seconds = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(Malformed),
            };
            let zone = rest.get(1..).ok_or(Malformed)?;
            if zone.len() != 5 || zone.as_bytes().get(2) != Some(&b':') {
                return Err(Malformed);
            }
            let (hours, minutes) = (digits(zone.get(0..2))?, digits(zone.get(3..5))?);
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let month = u8::try_from(month).map_err(|_| Malformed)?;
    let day = u8::try_from(day).map_err(|_| Malformed)?;
    let local =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
    let utc = u64::try_from(local - offset_seconds).map_err(|_| OutOfRange)?;
    utc.checked_mul(1000)
        .and_then(|ms| ms.checked_add(millis))
        .ok_or(OutOfRange)
}

const SECONDS_PER_DAY: i64 = 86_400;

/// The value of a field of ASCII digits only (no sign, no space).
fn digits(part: Option<&str>) -> Result<i64, DateTimeError> {
    match part {
        Some(part) if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => {
            part.parse().map_err(|_| DateTimeError::Malformed)
        }
        _ => Err(DateTimeError::Malformed),
    }
}

/// [`UtcTime::from_unix_seconds`] for an unsigned count, which may not fit an `i64`: whole
/// days always do (`u64::MAX` seconds is under 2^48 days).
fn from_unsigned_seconds(unix_seconds: u64) -> UtcTime {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(i64::MAX);
    let of_day = i64::try_from(unix_seconds % 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    UtcTime {
        year,
        month,
        day,
        hour: small(of_day / 3600),
        minute: small(of_day % 3600 / 60),
        second: small(of_day % 60),
    }
}

/// A field already reduced below 60 (or a month or day below 32).
fn small(value: i64) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
}

/// Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, small(month), small(day))
}

/// The inverse of [`civil_from_days`]: days since 1970-01-01 (negative before).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_in_seconds() {
        assert_eq!(format_seconds(0), "1970-01-01T00:00:00Z");
        // XEP-0202's example instant.
        assert_eq!(format_seconds(1_166_551_115), "2006-12-19T17:58:35Z");
        // A leap day and the day after.
        assert_eq!(format_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_seconds(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(format_seconds(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(format_seconds(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn milliseconds_are_always_written() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_764_097_236_123), "2025-11-25T19:00:36.123Z");
        assert_eq!(format_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn format_and_parse_round_trip() {
        for ms in [
            0,
            999,
            1_000,
            951_782_400_000,
            1_764_097_236_123,
            4_107_542_399_999,
        ] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms), "{}", format_ms(ms));
        }
    }

    #[test]
    fn parses_the_xep_0082_forms() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_ms("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_ms("1969-12-31T23:30:00-00:30"), Ok(0));
        assert_eq!(parse_ms("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_ms("1970-01-01T00:00:01.123456Z"), Ok(1123));
        assert_eq!(parse_ms("2006-12-19T17:58:35Z"), Ok(1_166_551_115_000));
        assert_eq!(
            parse_ms("2006-12-19T12:58:35.25-05:00"),
            Ok(1_166_551_115_250)
        );
    }

    #[test]
    fn refuses_what_is_not_a_datetime() {
        use DateTimeError::{Malformed, OutOfRange};
        assert_eq!(parse_ms("1969-12-31T23:59:59Z"), Err(OutOfRange));
        assert_eq!(parse_ms("1970-01-01T00:30:00+01:00"), Err(OutOfRange));
        for text in [
            "1970-01-01 00:00:00Z",
            "1970-13-01T00:00:00Z",
            "1970-01-32T00:00:00Z",
            "1970-01-01T24:00:00Z",
            "1970-01-01T00:00:00",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+1:00",
            "1970-01-01T01:00:00++1:00",
            "1970-01-01T00:00:00+0100",
            "1970-01-01T00:00:00z",
            "+970-01-01T00:00:00Z",
            "1970-01-01T00:00:00Zjunk",
            "",
        ] {
            assert_eq!(parse_ms(text), Err(Malformed), "{text:?}");
        }
    }

    #[test]
    fn fields_before_and_after_the_epoch() {
        assert_eq!(
            UtcTime::from_unix_seconds(-1),
            UtcTime {
                year: 1969,
                month: 12,
                day: 31,
                hour: 23,
                minute: 59,
                second: 59
            }
        );
        assert_eq!(
            UtcTime::from_unix_seconds(1_166_551_115),
            UtcTime {
                year: 2006,
                month: 12,
                day: 19,
                hour: 17,
                minute: 58,
                second: 35
            }
        );
        for days in [-800_000, -1, 0, 1, 11_016, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}
