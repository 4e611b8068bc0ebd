//! What a scenario run produced: the timeline as it happened ([`Event`]), the result of every
//! check with its measured figure ([`CheckResult`]), and the report as text, JSON (serde) and
//! JUnit XML (one test suite per scenario, one test case per check).

use serde::Serialize;

use crate::chaos::load::LoadReport;

/// Where in the run a check was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The steady state before anything was injected.
    Before,
    /// An `assert` step.
    Step,
    /// The steady state after every fault was healed.
    After,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Before => "steady state before",
            Phase::Step => "assert",
            Phase::After => "steady state after",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub phase: Phase,
    /// The step's index (from 0) for `assert` steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    pub title: String,
    pub passed: bool,
    /// What was measured last (the figure that decided).
    pub measured: String,
    /// Seconds from the check's start until it held (or gave up).
    pub seconds: f64,
    /// Seconds since the scenario started, when it was decided.
    pub at_s: f64,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    Failed,
    /// Not run: an earlier step failed, the steady state did not hold, or the run was
    /// interrupted.
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub index: usize,
    pub step: String,
    pub outcome: StepOutcome,
    pub detail: String,
    pub seconds: f64,
}

/// A line of the live timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the scenario started.
    pub at_s: f64,
    pub text: String,
}

/// A scenario's whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub file: String,
    pub description: String,
    pub passed: bool,
    /// Ctrl-C stopped it.
    pub interrupted: bool,
    /// Its timeout stopped it.
    pub timed_out: bool,
    /// Why it could not run on this machine (neither passed nor failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub seconds: f64,
    pub checks: Vec<CheckResult>,
    pub steps: Vec<StepResult>,
    /// What cleanup did (faults healed, scale restored) or failed to do.
    pub cleanup: Vec<String>,
    pub timeline: Vec<Event>,
    /// The load's report, when the scenario had a load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
}

impl ScenarioReport {
    /// The checks that failed and the steps that failed, as lines naming them and their figures.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                format!(
                    "{}: {} — measured: {}",
                    c.phase.label(),
                    c.title,
                    c.measured
                )
            })
            .collect();
        out.extend(
            self.steps
                .iter()
                .filter(|s| s.outcome == StepOutcome::Failed && self.skipped.is_none())
                .map(|s| format!("step {} `{}` failed: {}", s.index + 1, s.step, s.detail)),
        );
        if self.interrupted {
            out.push("interrupted (Ctrl-C)".to_string());
        }
        if self.timed_out {
            out.push("stopped by the scenario's timeout".to_string());
        }
        out
    }

    /// The summary printed after the timeline.
    pub fn summary(&self) -> String {
        let mut t = format!(
            "scenario {} {} in {:.1}s ({})\n",
            self.name,
            match (&self.skipped, self.passed) {
                (Some(_), _) => "SKIPPED",
                (None, true) => "PASSED",
                (None, false) => "FAILED",
            },
            self.seconds,
            self.file
        );
        for c in &self.checks {
            t.push_str(&format!(
                "  {:<4} {:<20} {}\n         measured: {}\n",
                if c.passed { "ok" } else { "FAIL" },
                c.phase.label(),
                c.title,
                c.measured
            ));
        }
        for s in self
            .steps
            .iter()
            .filter(|s| s.outcome == StepOutcome::Failed)
        {
            t.push_str(&format!(
                "  FAIL step {} {}: {}\n",
                s.index + 1,
                s.step,
                s.detail
            ));
        }
        let skipped = self
            .steps
            .iter()
            .filter(|s| s.outcome == StepOutcome::Skipped)
            .count();
        if skipped > 0 {
            t.push_str(&format!("  {skipped} steps skipped\n"));
        }
        if let Some(l) = &self.load {
            t.push_str(&format!(
                "  load: {} sent, {} ok, {} fallback, {:.2}% not 2xx, p50 {:.1}ms p99 {:.1}ms\n",
                l.sent,
                l.counts.ok,
                l.counts.fallback,
                l.error_rate_pct,
                l.latency_ms.p50,
                l.latency_ms.p99
            ));
        }
        for c in &self.cleanup {
            t.push_str(&format!("  cleanup: {c}\n"));
        }
        t
    }
}

/// The JUnit XML of several scenario runs: one suite each, one case per check, a failed step as
/// an error case.
pub fn junit(reports: &[ScenarioReport]) -> Result<String, String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("platform scenario");
    for r in reports {
        let mut suite = TestSuite::new(format!("scenario {}", r.name));
        suite.set_time(std::time::Duration::from_secs_f64(r.seconds.max(0.0)));
        for c in &r.checks {
            let status = if c.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!("{} — measured: {}", c.title, c.measured));
                s.set_type("assertion");
                s
            };
            let mut case = TestCase::new(format!("{}: {}", c.phase.label(), c.title), status);
            case.set_classname(format!("platform.scenario.{}", r.name));
            case.set_time(std::time::Duration::from_secs_f64(c.seconds.max(0.0)));
            case.set_system_out(format!("measured: {}", c.measured));
            suite.add_test_case(case);
        }
        for s in &r.steps {
            if s.outcome != StepOutcome::Failed {
                continue;
            }
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(s.detail.clone());
            status.set_type("step");
            let mut case = TestCase::new(format!("step {}: {}", s.index + 1, s.step), status);
            case.set_classname(format!("platform.scenario.{}", r.name));
            suite.add_test_case(case);
        }
        if let Some(why) = &r.skipped {
            let mut status = TestCaseStatus::skipped();
            status.set_message(why.clone());
            let mut case = TestCase::new("run", status);
            case.set_classname(format!("platform.scenario.{}", r.name));
            suite.add_test_case(case);
        }
        if r.interrupted || r.timed_out {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(if r.interrupted {
                "interrupted (Ctrl-C)"
            } else {
                "stopped by the scenario's timeout"
            });
            let mut case = TestCase::new("run", status);
            case.set_classname(format!("platform.scenario.{}", r.name));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(passed: bool) -> ScenarioReport {
        ScenarioReport {
            name: "demo".into(),
            file: "stacks/scenarios/demo.toml".into(),
            description: String::new(),
            passed,
            interrupted: false,
            timed_out: false,
            skipped: None,
            seconds: 12.5,
            checks: vec![CheckResult {
                phase: Phase::Step,
                step: Some(2),
                title: "breaker inventory-service of every order-service is OPEN within 3s".into(),
                passed,
                measured: "order-service-1 CLOSED, failure rate -1%, slow -1%".into(),
                seconds: 3.0,
                at_s: 9.0,
            }],
            steps: vec![StepResult {
                index: 0,
                step: "wait 1s".into(),
                outcome: StepOutcome::Done,
                detail: String::new(),
                seconds: 1.0,
            }],
            cleanup: Vec::new(),
            timeline: Vec::new(),
            load: None,
        }
    }

    /// A failed check reaches the summary, the failure list and the JUnit file with its title
    /// and measured figure.
    #[test]
    fn failed_check_is_named_with_its_figure() {
        let r = report(false);
        assert!(r.summary().contains("FAILED"));
        let f = r.failures();
        assert_eq!(f.len(), 1);
        assert!(
            f[0].contains("is OPEN within 3s") && f[0].contains("CLOSED"),
            "{f:?}"
        );
        let xml = junit(&[r]).unwrap();
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("measured: order-service-1 CLOSED"), "{xml}");
        let ok = junit(&[report(true)]).unwrap();
        assert!(ok.contains("failures=\"0\""), "{ok}");
    }
}
