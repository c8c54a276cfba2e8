//! Timestamps as the original system wrote them: Python's `datetime.isoformat()` of a UTC time,
//! with microseconds and `+00:00` (records' `created_at`/`updated_at`, messages, queue times).

/// Now, in that format.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_has_microseconds_and_an_explicit_utc_offset() {
        let now = super::now();
        assert!(now.ends_with("+00:00") && now.len() == "2026-11-29T13:00:00.000000+00:00".len(), "{now}");
    }
}
