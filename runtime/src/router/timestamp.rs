//! `initial_request_timestamp` validity, as the original checked it: Python 3.11's
//! `datetime.fromisoformat` after every `Z` is replaced by `+00:00` (spec §1.3). That accepts
//! more than RFC 3339 (`2023-09-15`, `20230915T114532Z`, `2023-W37-5`, comma fractions, any
//! single separator character) and rejects e.g. `2024/01/01 12:00:00`.
use chrono::{NaiveDate, Weekday};

pub fn is_valid(timestamp: &str) -> bool {
    let text = timestamp.replace('Z', "+00:00");
    let chars: Vec<char> = text.chars().collect();
    let Some((date_len, valid_date)) = date(&chars) else { return false };
    if !valid_date {
        return false;
    }
    match chars.len() {
        n if n == date_len => true,
        // One separator character of any kind, then the time.
        n if n > date_len + 1 => time(&chars[date_len + 1..]),
        _ => false,
    }
}

fn digits(chars: &[char], from: usize, count: usize) -> Option<u32> {
    let part = chars.get(from..from + count)?;
    if !part.iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.iter().collect::<String>().parse().ok()
}

/// Length of the date prefix and whether it names a real day, or `None` if no date form fits.
fn date(chars: &[char]) -> Option<(usize, bool)> {
    let year = digits(chars, 0, 4)? as i32;
    let extended = chars.get(4) == Some(&'-');
    let at = if extended { 5 } else { 4 };
    if chars.get(at) == Some(&'W') {
        let week = digits(chars, at + 1, 2)?;
        let mut len = at + 3;
        let day = match (extended, chars.get(len)) {
            (true, Some('-')) => {
                let day = digits(chars, len + 1, 1)?;
                len += 2;
                day
            }
            (false, Some(c)) if c.is_ascii_digit() => {
                len += 1;
                c.to_digit(10)?
            }
            _ => 1,
        };
        let weekday = match day {
            1 => Weekday::Mon,
            2 => Weekday::Tue,
            3 => Weekday::Wed,
            4 => Weekday::Thu,
            5 => Weekday::Fri,
            6 => Weekday::Sat,
            7 => Weekday::Sun,
            _ => return Some((len, false)),
        };
        return Some((len, NaiveDate::from_isoywd_opt(year, week, weekday).is_some()));
    }
    let month = digits(chars, at, 2)?;
    let day_at = if extended {
        if chars.get(at + 2) != Some(&'-') {
            return None;
        }
        at + 3
    } else {
        at + 2
    };
    let day = digits(chars, day_at, 2)?;
    Some((day_at + 2, NaiveDate::from_ymd_opt(year, month, day).is_some()))
}

/// `HH[:MM[:SS[.f…]]]` or `HH[MM[SS[.f…]]]`, then an optional `±HH[:MM[:SS[.f…]]]` offset.
fn time(chars: &[char]) -> bool {
    let offset_at = chars.iter().position(|c| *c == '+' || *c == '-');
    let (clock, offset) = match offset_at {
        Some(i) => (&chars[..i], Some(&chars[i + 1..])),
        None => (chars, None),
    };
    clock_time(clock) && offset.is_none_or(clock_time)
}

fn clock_time(chars: &[char]) -> bool {
    let (whole, fraction) = match chars.iter().position(|c| *c == '.' || *c == ',') {
        Some(i) => (&chars[..i], Some(&chars[i + 1..])),
        None => (chars, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.iter().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let extended = whole.get(2) == Some(&':');
    let parts: Vec<u32> = if extended {
        let mut parts = Vec::new();
        for (i, group) in whole.split(|c| *c == ':').enumerate() {
            if group.len() != 2 || i > 2 {
                return false;
            }
            match digits(group, 0, 2) {
                Some(v) => parts.push(v),
                None => return false,
            }
        }
        parts
    } else {
        if whole.len() % 2 != 0 || whole.is_empty() || whole.len() > 6 {
            return false;
        }
        match (0..whole.len() / 2).map(|i| digits(whole, i * 2, 2)).collect::<Option<Vec<u32>>>() {
            Some(parts) => parts,
            None => return false,
        }
    };
    // A fraction needs seconds before it.
    if fraction.is_some() && parts.len() < 3 {
        return false;
    }
    let limits = [23, 59, 59];
    !parts.is_empty() && parts.iter().zip(limits).all(|(v, max)| *v <= max)
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn accepts_what_python_fromisoformat_accepts() {
        for ok in [
            "2023-09-15T11:45:32.789Z",
            "2023-09-15",
            "2023-09-15 11:45",
            "20230915T114532Z",
            "2023-W37-5",
            "2023W375",
            "2023-W37",
            "2023-09-15T11:45:32,5",
            "2023-09-15T11:45:32+01:00",
            "2023-09-15T11:45:32.123456789-0530",
            "2023-09-15T11",
            "2024-02-29T00:00:00",
            "2023-09-15x11:45",
        ] {
            assert!(is_valid(ok), "{ok} should be accepted");
        }
    }

    #[test]
    fn rejects_what_it_rejects() {
        for bad in [
            "2024/01/01 12:00:00",
            "2023-02-29",
            "2023-13-01",
            "2023-09",
            "2023",
            "2023-09-15T",
            "2023-09-15T25:00",
            "2023-09-15T11:60",
            "2023-09-15T11:45:32.",
            "2023-09-15T11:45.5",
            "15/09/2023",
            "2023-W54-1",
            "2023-W37-8",
            "yesterday",
            "",
        ] {
            assert!(!is_valid(bad), "{bad} should be rejected");
        }
    }
}
