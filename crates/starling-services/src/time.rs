//! XEP-0202 entity time: UTC in the XEP-0082 DateTime profile, without a date library.

use minidom::Element;

use crate::NS_TIME;

/// `<time xmlns='urn:xmpp:time'><tzo>+00:00</tzo><utc>…Z</utc></time>` for this instant.
/// The server reports UTC (offset +00:00): it has no meaningful local zone of its own.
pub fn entity_time(unix_seconds: u64) -> Element {
    Element::builder("time", NS_TIME)
        .append(Element::builder("tzo", NS_TIME).append("+00:00").build())
        .append(
            Element::builder("utc", NS_TIME)
                .append(utc_datetime(unix_seconds))
                .build(),
        )
        .build()
}

/// `YYYY-MM-DDThh:mm:ssZ` (XEP-0082 §3.3).
pub fn utc_datetime(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let seconds_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        (seconds_of_day % 3600) / 60,
        seconds_of_day % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (the well-known era-based conversion:
/// 400-year eras of 146097 days, years starting in March so the leap day comes last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
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
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(utc_datetime(0), "1970-01-01T00:00:00Z");
        // XEP-0202's example instant.
        assert_eq!(utc_datetime(1_166_551_115), "2006-12-19T17:58:35Z");
        // A leap day and the day after.
        assert_eq!(utc_datetime(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_datetime(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(utc_datetime(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(utc_datetime(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
