//! `kbatch bench --steps`: a step load. Each offered rate runs for `--step-secs` in turn, and the
//! report gives each step's offered and achieved rate and latency, and the saturation rate.
//!
//! Invariant: each step is a run of its own (its own run id, request ids and reply matching),
//! started once the previous step's replies are all in or its wait ran out, so a step's figures
//! count only the requests sent during that step. The saturation rate is the offered rate of the
//! last step of the longest passing prefix: a step passes when its end-to-end p99 is within the
//! bound and every request it sent got a real answer (no reply missing, no send failed, no
//! OVERLOADED or other error reply), and a step after a failing one never counts, whatever its
//! own figures.

use serde::Serialize;

use super::report::BenchReport;
use super::timeline::Timeline;
use super::{ensure_reply_topic, execute, BenchError, LiveStats, RunControl, RunSpec};
use kbatch_core::telemetry::table::{Grid, Table};
use kbatch_core::wire::Status;

/// A step whose p99 is over this many times the bound ends the step load: higher rates would
/// only be further over.
pub const OVERLOAD_FACTOR: f64 = 4.0;

/// How the steps are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRule {
    /// The end-to-end p99 bound (ms).
    pub max_p99_ms: f64,
    /// Seconds each step sends for.
    pub step_secs: u64,
}

impl StepRule {
    fn bound_us(&self) -> f64 {
        self.max_p99_ms * 1000.0
    }
}

/// One step's figures, all tiers together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// Offered rate (requests/s).
    pub rate: f64,
    /// Seconds from the first step's first send to this step's first send.
    pub start_s: Option<f64>,
    /// Records the broker acknowledged.
    pub sent: u64,
    pub send_errors: u64,
    pub expected_replies: u64,
    pub answered: u64,
    pub missing: u64,
    /// First replies with an error status other than INVALID_INPUT (OVERLOADED,
    /// DEADLINE_EXCEEDED, MODEL_ERROR, …): answered but not served.
    pub error_replies: u64,
    /// Achieved reply rate: answered / (last reply − first send).
    pub achieved_rps: Option<f64>,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// p99 within the bound and every request served.
    pub passed: bool,
    /// Why the step did not pass.
    pub failed_because: Option<String>,
}

impl StepResult {
    /// The step that `report` measured, started `start_s` after the first step.
    pub fn of(report: &BenchReport, start_s: Option<f64>, rule: &StepRule) -> Self {
        let all = report.latency.iter().find(|l| l.tier == "all");
        let (p50_us, p99_us, max_us) = all.map_or((0, 0, 0), |l| (l.p50_us, l.p99_us, l.max_us));
        let error_replies = report
            .statuses
            .iter()
            .filter(|(s, _)| *s != Status::Ok.as_str() && *s != Status::InvalidInput.as_str())
            .map(|(_, n)| n)
            .sum();
        let ms = |us: f64| us / 1000.0;
        let mut why = Vec::new();
        if report.stopped_early {
            why.push("interrupted".to_owned());
        }
        if report.send_errors > 0 {
            why.push(format!("{} send errors", report.send_errors));
        }
        if report.missing > 0 {
            why.push(format!("{} unanswered", report.missing));
        }
        if error_replies > 0 {
            why.push(format!("{error_replies} error replies"));
        }
        if report.answered == 0 {
            why.push("no replies".to_owned());
        } else if p99_us as f64 > rule.bound_us() {
            why.push(format!(
                "p99 {:.1} ms > {} ms",
                ms(p99_us as f64),
                rule.max_p99_ms
            ));
        }
        Self {
            rate: report.rate,
            start_s,
            sent: report.sent,
            send_errors: report.send_errors,
            expected_replies: report.expected_replies,
            answered: report.answered,
            missing: report.missing,
            error_replies,
            achieved_rps: report.throughput.from_first_send,
            p50_us,
            p99_us,
            max_us,
            passed: why.is_empty(),
            failed_because: (!why.is_empty()).then(|| why.join(", ")),
        }
    }

    /// Why the step load ends after this step, if it does: its p99 is over
    /// [`OVERLOAD_FACTOR`] × the bound, or nothing was answered at all.
    pub fn ends_the_load(&self, rule: &StepRule) -> Option<String> {
        if self.answered == 0 {
            return Some(format!("no replies at {}/s", self.rate));
        }
        (self.p99_us as f64 > OVERLOAD_FACTOR * rule.bound_us()).then(|| {
            format!(
                "p99 {:.1} ms at {}/s is over {OVERLOAD_FACTOR} × the {} ms bound",
                self.p99_us as f64 / 1000.0,
                self.rate,
                rule.max_p99_ms
            )
        })
    }
}

/// The highest offered rate of the passing steps that no failing step precedes (steps in
/// rising rate order); `None` when the first step fails.
pub fn saturation_rps(steps: &[StepResult]) -> Option<f64> {
    steps.iter().take_while(|s| s.passed).last().map(|s| s.rate)
}

/// What a step load measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepsReport {
    /// The p99 bound (ms) of the saturation rule.
    pub max_p99_ms: f64,
    /// Seconds each step sent for.
    pub step_secs: u64,
    /// One entry per step run, in order.
    pub steps: Vec<StepResult>,
    /// The highest offered rate whose step and every lower step passed.
    pub saturation_rps: Option<f64>,
    /// Why the load ended before its last step, if it did.
    pub stopped_early: Option<String>,
    /// Rates asked for but not run.
    pub not_run: Vec<f64>,
    /// Every step second by second on one time axis (from the first step's first send), with a
    /// mark at each step's start.
    pub timeline: Timeline,
    /// Each step's full report.
    pub runs: Vec<BenchReport>,
}

impl StepsReport {
    /// The report of the steps that ran (`runs`, in order) out of the rates asked for.
    pub fn build(
        runs: Vec<BenchReport>,
        rates: &[f64],
        rule: &StepRule,
        stopped_early: Option<String>,
    ) -> Self {
        let origin = runs.first().and_then(|r| r.started_unix_ms);
        let start_of = |r: &BenchReport| match (origin, r.started_unix_ms) {
            (Some(o), Some(s)) => Some(s.saturating_sub(o) as f64 / 1000.0),
            _ => None,
        };
        let steps: Vec<StepResult> = runs
            .iter()
            .map(|r| StepResult::of(r, start_of(r), rule))
            .collect();
        let timeline = Timeline::concat(runs.iter().filter_map(|r| {
            start_of(r).map(|start| (start, &*r.timeline, format!("{}/s", r.rate)))
        }));
        Self {
            max_p99_ms: rule.max_p99_ms,
            step_secs: rule.step_secs,
            saturation_rps: saturation_rps(&steps),
            steps,
            stopped_early,
            not_run: rates.iter().skip(runs.len()).copied().collect(),
            timeline,
            runs,
        }
    }

    /// The steps as a table, then the saturation rate.
    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.section("step load")
            .row("step length", format!("{} s", self.step_secs))
            .row("p99 bound", format!("{} ms", self.max_p99_ms));
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let mut g = Grid::new([
            "offered/s",
            "sent",
            "answered",
            "missing",
            "achieved/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "passed",
        ]);
        for s in &self.steps {
            g.row([
                format!("{}", s.rate),
                s.sent.to_string(),
                s.answered.to_string(),
                s.missing.to_string(),
                s.achieved_rps.map_or("-".to_owned(), |r| format!("{r:.0}")),
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.max_us),
                match &s.failed_because {
                    None => "yes".to_owned(),
                    Some(why) => format!("no: {why}"),
                },
            ]);
        }
        t.section("steps (all tiers, end to end)").grid(g);
        t.section("result").row(
            "saturation",
            match self.saturation_rps {
                Some(r) => format!(
                    "{r}/s (highest offered rate with p99 ≤ {} ms and every request served, \
                     every lower step too)",
                    self.max_p99_ms
                ),
                None => "none: the first step did not pass".to_owned(),
            },
        );
        if let Some(why) = &self.stopped_early {
            let rest = self
                .not_run
                .iter()
                .map(|r| format!("{r}/s"))
                .collect::<Vec<_>>()
                .join(", ");
            t.row(
                "stopped early",
                if rest.is_empty() {
                    why.clone()
                } else {
                    format!("{why}; not run: {rest}")
                },
            );
        }
        t
    }
}

/// Runs each step's spec in turn (each step's reply topic made first; the first one's is the
/// caller's), stopping after a step that [`StepResult::ends_the_load`] or an interruption.
pub(super) async fn run_steps(
    specs: &[RunSpec],
    rule: &StepRule,
    partitions: i32,
    control: &RunControl,
    quiet: bool,
) -> Result<StepsReport, BenchError> {
    let rates: Vec<f64> = specs.iter().map(|s| s.rate).collect();
    let mut runs = Vec::with_capacity(specs.len());
    let mut stopped = None;
    for (i, spec) in specs.iter().enumerate() {
        if i > 0 {
            ensure_reply_topic(spec, partitions).await?;
        }
        eprintln!(
            "step {}/{}: {}/s for {} s ({} requests, run {})",
            i + 1,
            specs.len(),
            spec.rate,
            rule.step_secs,
            spec.total,
            spec.run_id
        );
        let mut progress = |s: &LiveStats| eprintln!("{s}");
        let live: Option<&mut (dyn FnMut(&LiveStats) + Send)> =
            if quiet { None } else { Some(&mut progress) };
        let report = execute(spec, control, live).await?;
        let step = StepResult::of(&report, None, rule);
        eprintln!(
            "step {}/{}: p99 {:.1} ms, {} of {} answered: {}",
            i + 1,
            specs.len(),
            step.p99_us as f64 / 1000.0,
            step.answered,
            step.expected_replies,
            step.failed_because.as_deref().unwrap_or("passed")
        );
        runs.push(report);
        if control.stop_sending.is_cancelled() {
            stopped = Some("interrupted".to_owned());
            break;
        }
        if let Some(why) = step.ends_the_load(rule) {
            if i + 1 < specs.len() {
                stopped = Some(why);
            }
            break;
        }
    }
    Ok(StepsReport::build(runs, &rates, rule, stopped))
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
