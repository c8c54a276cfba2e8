//! Kubernetes-style conditions from a [`Report`], computed in this one place: `Ready` plus one
//! condition per subsystem, each with reason, message and observedGeneration.
use super::Report;
use crate::crd::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const READY: &str = "Ready";
/// Reason of a condition whose subsystem is in sync.
pub const SYNCED: &str = "Synced";

/// The conditions for `report`. A condition whose status did not change keeps its
/// `lastTransitionTime` from `previous`.
pub fn conditions(report: &Report, previous: &[Condition], now: &Time) -> Vec<Condition> {
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" }.to_string();
        let last_transition_time = crate::crd::common::transition_time(previous, type_, &status, now);
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: report.generation,
            last_transition_time,
        }
    };

    let ready = match report.failed_subsystem() {
        None => condition(READY, true, SYNCED, format!("{} in sync", report.kind)),
        Some((subsystem, failure)) => {
            condition(READY, false, failure.reason.as_str(), format!("{subsystem}: {}", failure.message))
        }
    };
    std::iter::once(ready)
        .chain(report.subsystems.iter().map(|(type_, outcome)| match outcome {
            Ok(message) => condition(type_, true, SYNCED, message.clone()),
            Err(failure) => condition(type_, false, failure.reason.as_str(), failure.message.clone()),
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{Failure, Reason};

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn ready_follows_the_first_failure_and_keeps_transition_times() {
        let mut report = Report::new("Company", "dev", "c", Some(3));
        report.subsystems.push(("SecretsSynced", Err(Failure::new(Reason::SecretNotFound, "spec.apiKey: gone"))));
        report.subsystems.push(("RecordSynced", Ok("record up to date".into())));
        let earlier = time("2026-11-01T00:00:00Z");
        let previous = vec![Condition {
            type_: "RecordSynced".into(),
            status: "True".into(),
            reason: SYNCED.into(),
            message: String::new(),
            observed_generation: Some(2),
            last_transition_time: earlier.clone(),
        }];
        let now = time("2026-11-23T00:00:00Z");
        let all = conditions(&report, &previous, &now);
        assert_eq!(all[0].type_, READY);
        assert_eq!(all[0].status, "False");
        assert_eq!(all[0].reason, "SecretNotFound");
        assert_eq!(all[0].message, "SecretsSynced: spec.apiKey: gone");
        assert_eq!(all[0].observed_generation, Some(3));
        assert_eq!(all[2].last_transition_time, earlier, "unchanged status keeps its time");
        assert_eq!(all[1].last_transition_time, now);
    }
}
