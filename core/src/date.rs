//! Calendar dates as the forms and reports use them: `YYYY-MM-DD` text, days since 1970, and
//! the day and minute in China time (UTC+8, no daylight saving) of a moment in seconds.

/// China Standard Time's offset from UTC, in seconds.
const CHINA_OFFSET: i64 = 8 * 3600;

/// Days since 1970-01-01 of a `YYYY-MM-DD` date, or `None` if it is not a real date.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > days_in[(m - 1) as usize] {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The `YYYY-MM-DD` date of a number of days since 1970-01-01.
pub fn format_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}

/// The `YYYY-MM-DD` date in China of a moment in seconds since 1970.
pub fn china_day(secs: i64) -> String {
    format_date((secs + CHINA_OFFSET).div_euclid(86_400))
}

/// `YYYY-MM-DD HH:MM` in China of a moment in seconds since 1970.
pub fn china_minute(secs: i64) -> String {
    let rem = (secs + CHINA_OFFSET).rem_euclid(86_400);
    format!("{} {:02}:{:02}", china_day(secs), rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for d in ["1970-01-01", "2000-02-29", "2026-11-22", "2099-12-31"] {
            assert_eq!(format_date(parse_date(d).expect("valid")), d);
        }
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("26-1-1"), None);
    }

    #[test]
    fn a_moment_reads_as_the_day_and_minute_in_china() {
        // 2026-11-30 16:30 UTC is 2026-12-01 00:30 in China.
        let secs = parse_date("2026-11-30").expect("valid") * 86_400 + 16 * 3600 + 30 * 60;
        assert_eq!(china_day(secs), "2026-12-01");
        assert_eq!(china_minute(secs), "2026-12-01 00:30");
        assert_eq!(china_minute(-1), "1970-01-01 07:59");
    }
}
