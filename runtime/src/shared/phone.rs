//! One number, one person: phone numbers are kept in E.164 (`+447835065013`), whatever spacing
//! or national format a client sent, so the router's conversation and Twilio's answer to it meet
//! on the same key. Parsing and validity are libphonenumber's (the `phonenumber` crate).

/// `raw` in E.164. A number without a country code is read in `default_region` (ISO 3166-1
/// alpha-2, e.g. `GB`), the company's; without one it cannot be read. `Err` says why, without
/// the number.
pub fn e164(raw: &str, default_region: Option<&str>) -> Result<String, String> {
    let region = match default_region {
        Some(region) => {
            Some(region.parse::<phonenumber::country::Id>().map_err(|_| format!("unknown region {region:?}"))?)
        }
        None => None,
    };
    let number = phonenumber::parse(region, raw.trim()).map_err(|_| match region {
        None if !raw.trim().starts_with('+') => {
            "is not in international format (+ and a country code), and the company names no default region".to_string()
        }
        _ => "is not a phone number".to_string(),
    })?;
    // Not checked against the numbering plan's current ranges (libphonenumber's metadata lags
    // new ranges, and Twilio is the judge of what it can reach): only E.164's own bounds.
    let written = number.format().mode(phonenumber::Mode::E164).to_string();
    let digits = written.len() - 1;
    if !(8..=15).contains(&digits) {
        return Err("is not a phone number of E.164's length (8 to 15 digits)".into());
    }
    Ok(written)
}

/// `raw` written in E.164 if it is an international number at all (valid or not: Twilio is the
/// judge of the numbers it sends); `None` for anything else, such as an alphanumeric sender.
pub fn as_e164(raw: &str) -> Option<String> {
    // Twilio writes every number it sends this way: no parse needed (parsing costs more than
    // the rest of an inbound message's own work).
    let digits = raw.strip_prefix('+').unwrap_or_default();
    if (8..=15).contains(&digits.len()) && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(raw.to_string());
    }
    let number = phonenumber::parse(None, raw.trim()).ok()?;
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::{as_e164, e164};

    #[test]
    fn spacing_and_national_formats_become_one_number() {
        let one = Ok("+447835065013".to_string());
        assert_eq!(e164("+447835065013", None), one);
        assert_eq!(e164("+44 7835 065013", None), one);
        assert_eq!(e164(" +44 (0)7835-065013 ", None), one);
        assert_eq!(e164("07835 065013", Some("GB")), one);
        assert_eq!(e164("0044 7835 065013", Some("GB")), one);
        assert_eq!(e164("+447835065013", Some("US")), one, "a country code wins over the region");
        // Ofcom's range for drama, which the tests and benchmarks use.
        assert_eq!(e164("+44 7700 900123", None), Ok("+447700900123".to_string()));
        assert_eq!(e164("+447700000123", None), Ok("+447700000123".to_string()));
    }

    #[test]
    fn what_cannot_be_read_is_refused_saying_why() {
        assert!(e164("07835 065013", None).is_err_and(|why| why.contains("default region")));
        assert!(e164("not a number", Some("GB")).is_err());
        assert!(e164("+44 1234", None).is_err());
        assert!(e164("+44 7700 900123 4567 89", None).is_err(), "longer than E.164 allows");
        assert!(e164("07835 065013", Some("XX")).is_err_and(|why| why.contains("unknown region")));
    }

    #[test]
    fn a_number_twilio_sends_is_written_alike_and_a_name_is_left_alone() {
        assert_eq!(as_e164("+447835065013").as_deref(), Some("+447835065013"));
        assert_eq!(as_e164("+44 7835 065013").as_deref(), Some("+447835065013"));
        assert_eq!(as_e164("CUCUMBER"), None);
        // What Twilio sends is kept as it is, and is what parsing would have made of it.
        for number in ["+447835065013", "+14155552671", "+61412345678", "+4915123456789"] {
            let parsed = phonenumber::parse(None, number).map(|n| n.format().mode(phonenumber::Mode::E164).to_string());
            assert_eq!(as_e164(number), parsed.ok(), "{number}");
        }
    }
}
