//! RFC 3339 timestamps as Docker writes them (Go's `RFC3339Nano`: UTC, 0–9 fraction digits
//! with trailing zeros dropped), parsed to and formatted from nanoseconds since the epoch.
//! Hand-rolled because this runs once per line on the hot path; the calendar arithmetic is
//! Howard Hinnant's `days_from_civil`. Docker's own shape (`T`, `Z`, 0–9 fraction digits) has
//! a fast path at fixed offsets; anything else goes through the general parser.

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)` into nanoseconds since the epoch.
#[inline]
pub fn parse_rfc3339_nanos(s: &[u8]) -> Option<i64> {
    match parse_docker_utc(s) {
        Some(ns) => Some(ns),
        None => parse_general(s),
    }
}

/// 10^(9 - fraction digits), by the length of a `…Z` timestamp with a fraction (22–30).
const FRACTION_SCALE: [i64; 9] = [
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// The fast path: exactly `YYYY-MM-DDTHH:MM:SS[.d{1,9}]Z`, as Go's `RFC3339Nano` writes UTC
/// (what Docker writes on every line). Every byte is checked; `None` for any other shape or a
/// value the general parser would refuse (the caller then asks the general parser, which
/// decides). Must agree with [`parse_general`] wherever it returns `Some`.
#[inline]
fn parse_docker_utc(s: &[u8]) -> Option<i64> {
    let n = s.len();
    if !(20..=30).contains(&n) || n == 21 || s[n - 1] != b'Z' {
        return None;
    }
    if s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if n > 20 && s[19] != b'.' {
        return None;
    }
    // Digits checked all at once: any byte outside '0'..='9' leaves a value > 9 behind.
    let mut bad = 0u8;
    let mut d = |i: usize| -> i64 {
        let v = s[i].wrapping_sub(b'0');
        bad |= (v > 9) as u8;
        v as i64
    };
    let year = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3);
    let month = d(5) * 10 + d(6);
    let day = d(8) * 10 + d(9);
    let hour = d(11) * 10 + d(12);
    let min = d(14) * 10 + d(15);
    let sec = d(17) * 10 + d(18);
    let mut nanos = 0i64;
    if n > 20 {
        for i in 20..n - 1 {
            nanos = nanos * 10 + d(i);
        }
        nanos *= FRACTION_SCALE[n - 22];
    }
    if bad != 0
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec;
    // i64 nanoseconds end in 2262.
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// The general parser: any RFC 3339 shape this module accepts (`t`/space separator, `z`,
/// numeric offsets, fractions longer than 9 digits).
fn parse_general(s: &[u8]) -> Option<i64> {
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
    let mut buf = [0u8; 30];
    buf[..19].copy_from_slice(&seconds_text(secs));
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

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch. A sink encodes many events of the same
/// second in a row: the last one's text is kept per thread.
fn seconds_text(secs: i64) -> [u8; 19] {
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    LAST.with(|last| {
        let (at, text) = last.get();
        if at == secs {
            return text;
        }
        let text = format_seconds(secs);
        last.set((secs, text));
        text
    })
}

fn format_seconds(secs: i64) -> [u8; 19] {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let mut buf = [0u8; 19];
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
    buf
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
    fn the_kept_seconds_text_follows_every_change_of_second() {
        // The same second twice, another, and back: each formatted right (the per-thread
        // text of the last second is replaced, never reused for another second).
        for ns in [
            1_795_611_862_000_000_001_i64,
            1_795_611_862_999_999_999,
            1_795_611_863_000_000_000,
            -1,
            1_795_611_862_500_000_000,
        ] {
            let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
            let want = format!(
                "{}.{nanos:09}Z",
                std::str::from_utf8(&format_seconds(secs)).unwrap()
            );
            assert_eq!(format_rfc3339(ns, Fraction::Nanos), want);
        }
        assert_eq!(
            format_rfc3339(-1, Fraction::Nanos),
            "1969-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            format_rfc3339(1_795_611_863_000_000_000, Fraction::Seconds),
            "2026-11-25T13:04:23Z"
        );
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

    /// A deterministic generator (xorshift), so that failures are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A timestamp in one of many shapes: Docker's, and its neighbours.
    fn shape(r: &mut Rng) -> Vec<u8> {
        let ns = r.below(20_000 * 86_400) as i64 * 1_000_000_000 - 1_000 * 86_400_000_000_000
            + r.below(1_000_000_000) as i64;
        let mut s = format_rfc3339(ns, Fraction::Nanos).into_bytes();
        match r.below(6) {
            0 => {}
            1 => s = format_rfc3339(ns, Fraction::NanosTrimmed).into_bytes(),
            2 => {
                // 0–12 fraction digits.
                let keep = r.below(13) as usize;
                s.truncate(19);
                if keep > 0 {
                    s.push(b'.');
                    (0..keep).for_each(|_| s.push(b'0' + r.below(10) as u8));
                }
                s.push(b'Z');
            }
            3 => {
                s.pop();
                s.extend_from_slice(if r.below(2) == 0 {
                    b"+01:30"
                } else {
                    b"-05:00"
                });
            }
            4 => {
                let seps: &[u8] = b"tz ";
                let at = [10, 29][r.below(2) as usize];
                s[at] = seps[r.below(3) as usize];
            }
            _ => {}
        }
        // Corruption: a few bytes replaced, removed or added anywhere.
        for _ in 0..r.below(3) {
            let alphabet: &[u8] = b"0123456789:-.TZ+ /a\x00\xff9";
            let c = alphabet[r.below(alphabet.len() as u64) as usize];
            let at = r.below(s.len() as u64 + 1) as usize;
            match r.below(3) {
                0 if at < s.len() => s[at] = c,
                1 if at < s.len() => {
                    s.remove(at);
                }
                _ => s.insert(at, c),
            }
        }
        s
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut fast, mut total) = (0, 0);
        for _ in 0..200_000 {
            let s = shape(&mut r);
            let general = parse_general(&s);
            if let Some(ns) = parse_docker_utc(&s) {
                assert_eq!(Some(ns), general, "{:?}", String::from_utf8_lossy(&s));
                fast += 1;
            }
            assert_eq!(
                parse_rfc3339_nanos(&s),
                general,
                "{:?}",
                String::from_utf8_lossy(&s)
            );
            total += 1;
        }
        // The shapes exercise both paths.
        assert!(
            fast > total / 4 && fast < total,
            "{fast} of {total} on the fast path"
        );
    }

    #[test]
    fn fast_path_takes_every_docker_shape() {
        for digits in 0..=9u32 {
            let ns = 1_795_611_862_000_000_000
                + 123_456_789 / 10i64.pow(9 - digits) * 10i64.pow(9 - digits);
            let mut s = format_rfc3339(ns, Fraction::Nanos).into_bytes();
            s.truncate(19);
            if digits > 0 {
                s.push(b'.');
                s.extend_from_slice(&b"123456789"[..digits as usize]);
            }
            s.push(b'Z');
            assert_eq!(
                parse_docker_utc(&s),
                Some(ns),
                "{}",
                String::from_utf8_lossy(&s)
            );
        }
        // Shapes the fast path leaves to the general parser.
        for s in [
            &b"2026-11-25T13:04:22.Z"[..],
            b"2026-11-25t13:04:22Z",
            b"2026-11-25T13:04:22z",
            b"2026-11-25T13:04:22.1234567891Z",
            b"2026-11-25T13:04:22+00:00",
            b"2026-11-25T24:04:22Z",
            b"2026-11-25T13:04:2xZ",
        ] {
            assert_eq!(parse_docker_utc(s), None, "{}", String::from_utf8_lossy(s));
        }
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
