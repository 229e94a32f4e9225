//! Unit tests of `steps`: the pass rule, the saturation rate, the early stop and the report.

use super::*;

const RULE: StepRule = StepRule {
    max_p99_ms: 50.0,
    step_secs: 10,
};

/// A step at `rate` whose 100 requests were all answered OK, with an all-tier p99 of `p99_ms`,
/// started `start_ms` after the first step.
fn report(rate: f64, p99_ms: u64, start_ms: u64) -> BenchReport {
    let mut r = BenchReport::sample();
    r.rate = rate;
    r.started_unix_ms = Some(1_700_000_000_000 + start_ms);
    r.sent = 100;
    r.expected_replies = 100;
    r.answered = 100;
    r.missing = 0;
    r.statuses = [("OK".to_owned(), 100)].into();
    let all = r.latency.iter_mut().find(|l| l.tier == "all").unwrap();
    all.p50_us = p99_ms * 500;
    all.p99_us = p99_ms * 1000;
    all.max_us = p99_ms * 1200;
    r
}

fn results(reports: &[BenchReport]) -> Vec<StepResult> {
    reports
        .iter()
        .map(|r| StepResult::of(r, None, &RULE))
        .collect()
}

#[test]
fn saturation_is_the_last_step_before_the_first_that_misses_the_bound() {
    let steps = results(&[
        report(500.0, 10, 0),
        report(1000.0, 20, 0),
        report(2000.0, 60, 0),
        report(4000.0, 30, 0),
    ]);
    assert_eq!(
        steps.iter().map(|s| s.passed).collect::<Vec<_>>(),
        [true, true, false, true]
    );
    assert_eq!(
        saturation_rps(&steps),
        Some(1000.0),
        "the 4000/s step passes on its own but follows a failing one"
    );
    assert_eq!(
        steps[2].failed_because.as_deref(),
        Some("p99 60.0 ms > 50 ms")
    );
    // Exactly at the bound passes.
    assert!(results(&[report(500.0, 50, 0)])[0].passed);
    assert_eq!(saturation_rps(&results(&[report(500.0, 51, 0)])), None);
    assert_eq!(saturation_rps(&[]), None);
}

#[test]
fn a_step_with_missing_replies_send_errors_or_error_replies_does_not_count() {
    let mut missing = report(1000.0, 20, 0);
    missing.answered = 97;
    missing.missing = 3;
    let steps = results(&[report(500.0, 10, 0), missing, report(2000.0, 15, 0)]);
    assert!(!steps[1].passed);
    assert_eq!(steps[1].failed_because.as_deref(), Some("3 unanswered"));
    assert_eq!(saturation_rps(&steps), Some(500.0));

    let mut shed = report(500.0, 5, 0);
    shed.statuses = [("OK".to_owned(), 90), ("OVERLOADED".to_owned(), 10)].into();
    let mut failed_send = report(500.0, 5, 0);
    failed_send.send_errors = 2;
    let mut interrupted = report(500.0, 5, 0);
    interrupted.stopped_early = true;
    let mut invalid = report(500.0, 5, 0);
    invalid.statuses = [("OK".to_owned(), 90), ("INVALID_INPUT".to_owned(), 10)].into();
    let steps = results(&[shed, failed_send, interrupted, invalid]);
    assert_eq!(
        steps
            .iter()
            .map(|s| s.failed_because.as_deref())
            .collect::<Vec<_>>(),
        [
            Some("10 error replies"),
            Some("2 send errors"),
            Some("interrupted"),
            None
        ],
        "INVALID_INPUT answers the bad records a run asks for"
    );
    assert_eq!(steps[0].error_replies, 10);
}

#[test]
fn the_load_ends_after_a_step_four_times_over_the_bound_or_without_replies() {
    let ends = |r: BenchReport| StepResult::of(&r, None, &RULE).ends_the_load(&RULE);
    assert_eq!(ends(report(1000.0, 200, 0)), None, "4 × 50 ms exactly");
    let why = ends(report(2000.0, 201, 0)).expect("over 4 × the bound");
    assert!(why.contains("2000/s") && why.contains("201.0 ms"), "{why}");
    let mut silent = report(500.0, 0, 0);
    silent.answered = 0;
    silent.missing = 100;
    assert_eq!(ends(silent).as_deref(), Some("no replies at 500/s"));
}

#[test]
fn the_report_places_steps_on_one_axis_and_says_what_was_not_run() {
    let runs = vec![
        report(500.0, 10, 0),
        report(1000.0, 20, 12_500),
        report(2000.0, 300, 25_000),
    ];
    let r = StepsReport::build(
        runs,
        &[500.0, 1000.0, 2000.0, 4000.0],
        &RULE,
        Some("p99 300.0 ms at 2000/s is over 4 × the 50 ms bound".into()),
    );
    assert_eq!(
        r.steps.iter().map(|s| s.start_s).collect::<Vec<_>>(),
        [Some(0.0), Some(12.5), Some(25.0)]
    );
    assert_eq!(r.saturation_rps, Some(1000.0));
    assert_eq!(r.not_run, [4000.0]);
    assert_eq!(
        r.timeline
            .marks
            .iter()
            .map(|m| (m.t_s, m.label.as_str()))
            .collect::<Vec<_>>(),
        [(0.0, "500/s"), (12.5, "1000/s"), (25.0, "2000/s")]
    );
    // The sample's own timeline (90 answers sent within its first second) once per step.
    let starts: Vec<f64> = r.timeline.points.iter().map(|p| p.t_s).collect();
    assert!(
        starts.contains(&12.5) && starts.contains(&25.0),
        "{starts:?}"
    );

    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["saturation_rps"], 1000.0);
    assert_eq!(json["steps"][1]["rate"], 1000.0);
    assert_eq!(json["steps"][1]["p99_us"], 20_000);
    assert_eq!(json["steps"][2]["passed"], false);
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(3));
    assert!(json["timeline"]["points"].is_array());

    let text = r.table().render();
    let row = |first: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("no row {first}: {text}"))
            .to_owned()
    };
    assert!(
        row("1000").contains("20.00") && row("1000").ends_with("yes"),
        "{text}"
    );
    assert!(row("2000").contains("no: p99 300.0 ms > 50 ms"), "{text}");
    assert!(row("saturation").contains("1000/s"), "{text}");
    assert!(row("stopped early").ends_with("not run: 4000/s"), "{text}");
}

#[test]
fn no_saturation_when_the_first_step_fails() {
    let r = StepsReport::build(vec![report(500.0, 80, 0)], &[500.0], &RULE, None);
    assert_eq!(r.saturation_rps, None);
    assert!(r
        .table()
        .render()
        .contains("none: the first step did not pass"));
    assert!(r.not_run.is_empty() && r.stopped_early.is_none());
}
