//! Twilio's webhook signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed with the
//! account's auth token, over the URL Twilio called followed by every POST parameter as
//! `name + value`, names sorted (and a name's values sorted), blank values included. Twilio's
//! own validator accepts the URL with or without the default port; so does this one.
use base64::Engine;
use ring::hmac;

/// The signature Twilio sends for `url` and `params`, signed with `auth_token`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, signed_text(url, params).as_bytes()))
}

/// Whether `signature` is Twilio's for `url` (with or without its default port) and `params`;
/// compared in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    port_variants(url).iter().any(|url| hmac::verify(&key, signed_text(url, params).as_bytes(), &tag).is_ok())
}

fn signed_text(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut text = url.to_string();
    for (name, value) in sorted {
        text.push_str(name);
        text.push_str(value);
    }
    text
}

/// The URL as given, and with the scheme's default port added (when it has none) or removed
/// (when it has the default one).
fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else { return variants };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return variants,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // A port follows the last ':' after any IPv6 literal's closing bracket.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[host_end..].rfind(':').map(|i| i + host_end) {
        Some(colon) if &authority[colon + 1..] == default_port => {
            variants.push(format!("{scheme}://{}{tail}", &authority[..colon]));
        }
        Some(_) => {}
        None => variants.push(format!("{scheme}://{authority}:{default_port}{tail}")),
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Twilio's published example (webhooks security documentation).
    fn twilio_example() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn signs_twilios_published_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &twilio_example()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(verify("12345", url, &twilio_example(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn a_forged_or_altered_signature_is_refused() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(!verify("12346", url, &twilio_example(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="), "another token");
        let mut altered = twilio_example();
        altered[2].1 = "9999".into();
        assert!(!verify("12345", url, &altered, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), "a changed parameter");
        assert!(!verify("12345", url, &twilio_example(), "not base64!"));
        assert!(!verify("12345", url, &twilio_example(), ""));
    }

    #[test]
    fn the_default_port_may_be_present_or_not() {
        let form = params(&[("Body", "hi"), ("From", "whatsapp:+447700900001")]);
        let with_port = sign("token", "https://hooks.example.com:443/webhooks/twilio/whatsapp", &form);
        assert!(verify("token", "https://hooks.example.com/webhooks/twilio/whatsapp", &form, &with_port));
        let without = sign("token", "https://hooks.example.com/webhooks/twilio/whatsapp", &form);
        assert!(verify("token", "https://hooks.example.com:443/webhooks/twilio/whatsapp", &form, &without));
        let other_port = sign("token", "https://hooks.example.com:8443/webhooks/twilio/whatsapp", &form);
        assert!(!verify("token", "https://hooks.example.com/webhooks/twilio/whatsapp", &form, &other_port));
    }

    #[test]
    fn blank_parameters_are_signed() {
        let with_blank = params(&[("Body", ""), ("MediaUrl0", "https://api.twilio.com/m/ME1"), ("NumMedia", "1")]);
        let signature = sign("token", "https://hooks.example.com/w", &with_blank);
        assert!(verify("token", "https://hooks.example.com/w", &with_blank, &signature));
        assert!(!verify("token", "https://hooks.example.com/w", &with_blank[1..], &signature), "blank Body dropped");
    }
}
