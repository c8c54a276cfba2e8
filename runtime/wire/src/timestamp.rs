//! Timestamps as the original system wrote them: Python's `datetime.isoformat()` of a UTC time,
//! with microseconds and `+00:00` (records' `created_at`/`updated_at`, messages, queue times);
//! and the epoch clocks DynamoDB numbers use (TTLs in seconds, leases and arrivals in ms).

/// Now, in that format.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Seconds since the Unix epoch (DynamoDB TTL attributes).
pub fn epoch_seconds() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch (leases, arrival times).
pub fn epoch_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// Nanoseconds of the current second: cheap jitter, not randomness.
pub fn subsec_nanos() -> u32 {
    since_epoch().subsec_nanos()
}

/// A clock before 1970 reads as the epoch.
fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_has_microseconds_and_an_explicit_utc_offset() {
        let now = super::now();
        assert!(now.ends_with("+00:00") && now.len() == "2026-11-29T13:00:00.000000+00:00".len(), "{now}");
    }
}
