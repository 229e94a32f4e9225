//! Unit tests of the timeline chart, on hand-made timelines and on a report's JSON form.

use super::*;
use crate::bench::{BenchReport, LatencyBy, PerTier, TimelineMark, TimelinePoint};

fn latency(p50_ms: u64, p99_ms: u64) -> Option<SecondLatency> {
    Some(SecondLatency {
        count: 10,
        p50_us: p50_ms * 1000,
        p99_us: p99_ms * 1000,
        max_us: p99_ms * 1100,
    })
}

/// `secs` seconds of 100 sends and 95 replies; the given tiers answered in 5/20 ms.
fn timeline(secs: u64, tiers: &[Tier]) -> Timeline {
    let has = |t| tiers.contains(&t);
    Timeline {
        bucket_s: 1.0,
        latency_by: LatencyBy::Send,
        points: (0..secs)
            .map(|s| TimelinePoint {
                t_s: s as f64,
                sent: 100,
                replies: 95,
                latency: PerTier::from(Tier::ALL.map(
                    |t| {
                        if has(t) {
                            latency(5, 20)
                        } else {
                            None
                        }
                    },
                )),
            })
            .collect(),
        marks: Vec::new(),
    }
}

fn run_json(t: Timeline) -> BenchJson {
    BenchJson {
        timeline: t,
        run_id: Some("abc123".into()),
        rate: Some(100.0),
        planned: Some(500),
        steps: None,
        saturation_rps: None,
        max_p99_ms: None,
        step_secs: None,
    }
}

/// The contents of the SVG's `<text>` elements.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_owned())
        })
        .collect()
}

fn polylines(svg: &str) -> usize {
    svg.matches("<polyline").count()
}

#[test]
fn one_latency_series_per_tier_and_percentile_present_and_two_rate_series() {
    let svg = timeline_svg(&run_json(timeline(5, &[Tier::Critical, Tier::Low]))).unwrap();
    assert!(svg.starts_with("<svg"), "{svg:.200}");
    let texts = texts(&svg);
    for label in [
        "critical p50",
        "critical p99",
        "low p50",
        "low p99",
        "sent/s",
        "replies/s",
    ] {
        assert_eq!(
            texts.iter().filter(|t| *t == label).count(),
            1,
            "one legend entry {label}: {texts:?}"
        );
    }
    assert!(
        !texts
            .iter()
            .any(|t| t.starts_with("high") || t.starts_with("normal")),
        "tiers without data have no series: {texts:?}"
    );
    assert!(texts.contains(&"kbatch bench abc123: 500 requests at 100/s".to_owned()));
    // Each series is one polyline plus its legend sample: a third tier adds 2 × 2.
    let one_more = timeline_svg(&run_json(timeline(
        5,
        &[Tier::Critical, Tier::Normal, Tier::Low],
    )))
    .unwrap();
    assert_eq!(polylines(&one_more), polylines(&svg) + 4);
}

#[test]
fn the_lines_go_through_the_middle_of_each_second_on_a_log_axis() {
    let svg = timeline_svg(&run_json(timeline(4, &[Tier::High]))).unwrap();
    // The p99 line (width 2, the tier's colour): one vertex per second, same height (20 ms).
    let p99 = svg
        .lines()
        .find(|l| {
            l.starts_with("<polyline") && l.contains("#FF7F0E") && l.contains("stroke-width=\"2\"")
        })
        .unwrap_or_else(|| panic!("{svg}"));
    let points: Vec<(i32, i32)> = p99
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .filter_map(|xy| {
            let (x, y) = xy.trim_end_matches('"').split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect();
    assert_eq!(points.len(), 4, "{p99}");
    assert!(points.windows(2).all(|w| w[0].1 == w[1].1), "{points:?}");
    let steps: Vec<i32> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(steps.iter().all(|d| (d - steps[0]).abs() <= 1), "{steps:?}");
    // The axis runs 1..100 ms (decades around 5..20 ms), labelled in ms.
    let texts = texts(&svg);
    assert!(
        texts.contains(&"1".to_owned()) && texts.contains(&"100".to_owned()),
        "{texts:?}"
    );
}

#[test]
fn a_step_load_has_its_steps_marked_and_its_saturation_in_the_title() {
    let mut t = timeline(6, &[Tier::Normal]);
    t.marks = vec![
        TimelineMark {
            t_s: 0.0,
            label: "500/s".into(),
        },
        TimelineMark {
            t_s: 3.0,
            label: "1000/s".into(),
        },
    ];
    let json = serde_json::json!({
        "max_p99_ms": 50.0,
        "step_secs": 3,
        "steps": [{"rate": 500.0}, {"rate": 1000.0}],
        "saturation_rps": 500.0,
        "timeline": t,
    });
    let bench: BenchJson = serde_json::from_value(json).unwrap();
    let svg = timeline_svg(&bench).unwrap();
    let texts = texts(&svg);
    assert!(texts.contains(&"500/s".to_owned()) && texts.contains(&"1000/s".to_owned()));
    assert!(
        texts.contains(
            &"kbatch bench: steps of 500, 1000/s, 3 s each; saturation 500/s at p99 ≤ 50 ms"
                .to_owned()
        ),
        "{texts:?}"
    );
}

#[test]
fn an_empty_timeline_is_refused() {
    let err = timeline_svg(&run_json(timeline(0, &[]))).unwrap_err();
    assert!(matches!(err, PlotError::NoData(_)), "{err}");
}

#[test]
fn a_report_is_drawn_from_its_json_form_and_written() {
    let report = BenchReport::sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.svg");
    super::super::write_bench_chart(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let texts = texts(&svg);
    assert!(texts.contains(&"critical p99".to_owned()), "{texts:?}");
    assert!(
        texts.contains(&"kbatch bench r: 100 requests at 100/s".to_owned()),
        "{texts:?}"
    );

    // The same chart from the file `--report` writes.
    let json = dir.path().join("run.json");
    std::fs::write(&json, serde_json::to_string(&report).unwrap()).unwrap();
    let out = dir.path().join("again.svg");
    super::super::run(&super::super::PlotArgs {
        chart: super::super::Chart::Timeline {
            report: json,
            output: out.clone(),
        },
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(out).unwrap(), svg);
}
