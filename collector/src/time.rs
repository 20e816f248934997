//! RFC 3339 timestamps as Docker writes them (Go's `RFC3339Nano`: UTC, 0–9 fraction digits
//! with trailing zeros dropped), parsed to and formatted from nanoseconds since the epoch.
//! Hand-rolled because this runs once per line on the hot path; the calendar arithmetic is
//! Howard Hinnant's `days_from_civil`.

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)` into nanoseconds since the epoch.
pub fn parse_rfc3339_nanos(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        let mut v = 0i64;
        for &c in &s[a..b] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (s[i] - b'0') as i64;
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits.min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match s.get(i)? {
        b'Z' | b'z' if i + 1 == s.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == s.len() && s[i + 3] == b':' => {
            let off = num(i + 1, i + 3)? * 3600 + num(i + 4, i + 6)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since the epoch.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// How many fraction digits to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// Go's RFC3339Nano: up to 9 digits, trailing zeros (and a bare `.`) dropped.
    NanosTrimmed,
    /// Always 9 digits.
    Nanos,
    /// Always 6 digits (syslog `rfc5424micro`).
    Micros,
    /// No fraction (syslog `rfc5424`).
    Seconds,
}

/// Appends `ns` as RFC 3339 UTC (`…Z`) to `out`.
pub fn write_rfc3339(out: &mut Vec<u8>, ns: i64, fraction: Fraction) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let mut buf = [0u8; 30];
    let two = |b: &mut [u8], v: u32| {
        b[0] = b'0' + (v / 10) as u8;
        b[1] = b'0' + (v % 10) as u8;
    };
    let y = y.clamp(0, 9999) as u32;
    buf[0] = b'0' + (y / 1000) as u8;
    buf[1] = b'0' + (y / 100 % 10) as u8;
    buf[2] = b'0' + (y / 10 % 10) as u8;
    buf[3] = b'0' + (y % 10) as u8;
    buf[4] = b'-';
    two(&mut buf[5..], mo);
    buf[7] = b'-';
    two(&mut buf[8..], d);
    buf[10] = b'T';
    two(&mut buf[11..], sod / 3600);
    buf[13] = b':';
    two(&mut buf[14..], sod / 60 % 60);
    buf[16] = b':';
    two(&mut buf[17..], sod % 60);
    let mut len = 19;
    let digits = match fraction {
        Fraction::Seconds => 0,
        Fraction::Micros => 6,
        Fraction::Nanos => 9,
        Fraction::NanosTrimmed => {
            let mut n = 9;
            let mut v = nanos;
            if v == 0 {
                0
            } else {
                while v.is_multiple_of(10) {
                    v /= 10;
                    n -= 1;
                }
                n
            }
        }
    };
    if digits > 0 {
        buf[len] = b'.';
        let mut v = nanos / 10u32.pow(9 - digits);
        for k in (0..digits as usize).rev() {
            buf[len + 1 + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        len += 1 + digits as usize;
    }
    buf[len] = b'Z';
    out.extend_from_slice(&buf[..len + 1]);
}

/// `ns` as an RFC 3339 string (convenience for tests and rare paths).
pub fn format_rfc3339(ns: i64, fraction: Fraction) -> String {
    let mut v = Vec::with_capacity(30);
    write_rfc3339(&mut v, ns, fraction);
    String::from_utf8(v).expect("ascii")
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_times() {
        let t = parse_rfc3339_nanos(b"2026-11-25T13:04:22.901652423Z").unwrap();
        assert_eq!(t, 1_795_611_862_901_652_423);
        assert_eq!(
            parse_rfc3339_nanos(b"2026-11-25T13:04:22.9Z").unwrap(),
            1_795_611_862_900_000_000
        );
        assert_eq!(
            parse_rfc3339_nanos(b"2026-11-25T13:04:22Z").unwrap(),
            1_795_611_862_000_000_000
        );
        assert_eq!(
            parse_rfc3339_nanos(b"2026-11-25T14:04:22+01:00").unwrap(),
            1_795_611_862_000_000_000
        );
        assert_eq!(parse_rfc3339_nanos(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_nanos(b"2026-13-25T13:04:22Z"), None);
        assert_eq!(parse_rfc3339_nanos(b"2026-11-25T13:04:22."), None);
        assert_eq!(parse_rfc3339_nanos(b"garbage-but-long-enough"), None);
    }

    #[test]
    fn formats_like_go_rfc3339nano() {
        let t = 1_795_611_862_901_652_423;
        assert_eq!(
            format_rfc3339(t, Fraction::NanosTrimmed),
            "2026-11-25T13:04:22.901652423Z"
        );
        assert_eq!(
            format_rfc3339(1_795_611_862_900_000_000, Fraction::NanosTrimmed),
            "2026-11-25T13:04:22.9Z"
        );
        assert_eq!(
            format_rfc3339(1_795_611_862_000_000_000, Fraction::NanosTrimmed),
            "2026-11-25T13:04:22Z"
        );
        assert_eq!(
            format_rfc3339(t, Fraction::Micros),
            "2026-11-25T13:04:22.901652Z"
        );
        assert_eq!(format_rfc3339(t, Fraction::Seconds), "2026-11-25T13:04:22Z");
        assert_eq!(
            format_rfc3339(0, Fraction::Nanos),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn round_trips_many_dates() {
        for days in (-1000..30000).step_by(37) {
            let ns = days as i64 * 86_400_000_000_000 + 12_345_678_901;
            let s = format_rfc3339(ns, Fraction::Nanos);
            assert_eq!(parse_rfc3339_nanos(s.as_bytes()), Some(ns), "{s}");
        }
    }
}
