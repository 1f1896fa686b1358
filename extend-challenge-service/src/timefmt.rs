//! Timestamps on the wire: RFC 3339, UTC, whole seconds, `Z` (CONTRACT §3.1).

use chrono::{DateTime, Utc};

/// `2025-11-04T12:00:00Z`: RFC 3339, UTC, whole seconds (CONTRACT §3.1).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    let mut s = String::with_capacity(20);
    write_rfc3339(&mut s, t);
    s
}

/// [`rfc3339`] of an optional timestamp; absent is `""`.
pub fn rfc3339_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(rfc3339).unwrap_or_default()
}

/// Appends [`rfc3339`] without an intermediate allocation.
pub fn write_rfc3339(out: &mut String, t: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_in_utc() {
        let t = DateTime::parse_from_rfc3339("2025-11-04T13:00:00.987+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(t), "2025-11-04T12:00:00Z");
        assert_eq!(rfc3339_opt(None), "");
    }
}
