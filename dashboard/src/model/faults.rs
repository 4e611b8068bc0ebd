//! The faults panel's data: the stack's active faults with their end time, as the fault
//! library lists them, and what changed since the last read (for the timeline).

use chrono::{DateTime, Utc};

/// One active fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultView {
    /// The id `platform heal ID` takes.
    pub id: String,
    /// `stop`, `latency`, `app-error`, ...
    pub kind: String,
    /// The service it was aimed at.
    pub target: String,
    /// The instance it hit (`inventory-service-1`).
    pub instance: String,
    /// Its options as the CLI writes them (`--delay 200ms`), possibly empty.
    pub options: String,
    pub started: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

impl FaultView {
    /// Time left at `now` (zero once due).
    pub fn left(&self, now: DateTime<Utc>) -> chrono::Duration {
        (self.ends - now).max(chrono::Duration::zero())
    }
}

/// Faults that appeared (with their start) and disappeared (`None`) between two reads, as
/// timeline sentences.
pub fn fault_changes(
    before: &[FaultView],
    after: &[FaultView],
) -> Vec<(Option<DateTime<Utc>>, String)> {
    let mut out = Vec::new();
    for f in after
        .iter()
        .filter(|f| !before.iter().any(|b| b.id == f.id))
    {
        let secs = (f.ends - f.started).num_seconds();
        out.push((
            Some(f.started),
            format!(
                "fault {} {} on {}{} for {secs}s",
                f.id,
                f.kind,
                f.instance,
                if f.options.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.options)
                }
            ),
        ));
    }
    for f in before
        .iter()
        .filter(|f| !after.iter().any(|a| a.id == f.id))
    {
        out.push((
            None,
            format!("fault {} {} on {} reverted", f.id, f.kind, f.instance),
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fault(
        id: &str,
        kind: &str,
        instance: &str,
        started: i64,
        secs: i64,
    ) -> FaultView {
        let t0 = DateTime::from_timestamp(1_735_732_800 + started, 0).unwrap();
        FaultView {
            id: id.into(),
            kind: kind.into(),
            target: instance
                .rsplit_once('-')
                .map_or(instance, |(s, _)| s)
                .into(),
            instance: instance.into(),
            options: String::new(),
            started: t0,
            ends: t0 + chrono::Duration::seconds(secs),
        }
    }

    /// New faults and reverted ones each make one sentence; time left never goes negative.
    #[test]
    fn changes_and_time_left() {
        let a = fault("f1", "stop", "inventory-service-1", 0, 60);
        let b = fault("f2", "latency", "order-service-1", 10, 30);
        let changes = fault_changes(std::slice::from_ref(&a), std::slice::from_ref(&b));
        assert_eq!(
            changes,
            vec![
                (
                    Some(b.started),
                    "fault f2 latency on order-service-1 for 30s".to_string()
                ),
                (
                    None,
                    "fault f1 stop on inventory-service-1 reverted".to_string()
                ),
            ]
        );
        assert_eq!(
            a.left(a.started + chrono::Duration::seconds(45))
                .num_seconds(),
            15
        );
        assert_eq!(
            a.left(a.ends + chrono::Duration::seconds(5)).num_seconds(),
            0
        );
    }
}
