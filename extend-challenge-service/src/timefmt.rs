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

/// Appends [`rfc3339`] without an intermediate allocation (or the `fmt` machinery: the
/// challenge list writes up to three of these per goal).
pub fn write_rfc3339(out: &mut String, t: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        use std::fmt::Write;
        let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%SZ"));
        return;
    }
    let d2 = |n: u32| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let y = year as u32;
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
    ]);
    b[4] = b'-';
    b[5..7].copy_from_slice(&d2(t.month()));
    b[7] = b'-';
    b[8..10].copy_from_slice(&d2(t.day()));
    b[10] = b'T';
    b[11..13].copy_from_slice(&d2(t.hour()));
    b[13] = b':';
    b[14..16].copy_from_slice(&d2(t.minute()));
    b[16] = b':';
    b[17..19].copy_from_slice(&d2(t.second()));
    b[19] = b'Z';
    // Every byte above is ASCII.
    out.push_str(std::str::from_utf8(&b).expect("ASCII"));
}

/// Appends the decimal form of `n` (what `format!("{n}")` gives), without `fmt`.
pub fn write_i64(out: &mut String, n: i64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        b[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&b[i..]).expect("ASCII"));
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
        let t = DateTime::parse_from_rfc3339("0987-01-09T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(t), "0987-01-09T03:04:05Z");
        let t = DateTime::parse_from_rfc3339("2099-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn integers_match_display() {
        for n in [
            0,
            7,
            -7,
            10,
            99,
            -100,
            1_000_000_000,
            i64::from(i32::MIN),
            i64::MIN,
            i64::MAX,
        ] {
            let mut s = String::new();
            write_i64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
