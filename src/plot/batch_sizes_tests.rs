//! Unit tests of the batch-size chart, from hand-made `kbatch bench-model` and `kbatch bench`
//! JSON reports.

use std::path::PathBuf;

use super::*;
use crate::plot::{run, Chart, PlotArgs};

/// A `kbatch bench-model --json` report as the command writes it (fields the chart ignores
/// included).
fn raw_json(threads: usize, items: [f64; 4]) -> String {
    let points: Vec<String> = [1, 8, 32, 128]
        .iter()
        .zip(items)
        .map(|(b, i)| {
            format!(
                r#"{{"batch": {b}, "calls": 10, "items_per_s": {i}, "median_batch_us": 100.0}}"#
            )
        })
        .collect();
    format!(
        r#"{{"model": "models/example/1/model.onnx", "device": "cpu", "intra_op_threads": {threads},
            "seconds": 2.0, "points": [{}], "best": null}}"#,
        points.join(", ")
    )
}

const DRAIN: &str = r#"{"run_id": "d", "rate": 0.0, "answered": 1000,
    "throughput": {"from_first_send": 900.0, "between_replies": 4321.5,
                   "first_send_to_last_reply_s": 1.1, "first_to_last_reply_s": 0.9}}"#;

fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_owned())
        })
        .collect()
}

fn raws() -> Vec<RawModelReport> {
    [
        raw_json(1, [900.0, 3000.0, 4000.0, 4200.0]),
        raw_json(2, [1500.0, 5200.0, 7100.0, 7600.0]),
    ]
    .iter()
    .map(|j| serde_json::from_str(j).unwrap())
    .collect()
}

#[test]
fn one_line_per_raw_report_labelled_by_threads_and_the_drain_as_a_level_line() {
    let raws = raws();
    assert_eq!(
        raws[1].points[2],
        RawPoint {
            batch: 32,
            items_per_s: 7100.0
        }
    );
    let drain: DrainReport = serde_json::from_str(DRAIN).unwrap();
    let rate = drain.between_replies(Path::new("d.json")).unwrap();
    assert_eq!(rate, 4321.5);
    let svg = batch_sizes_svg(&raws, Some(rate)).unwrap();
    let labels = texts(&svg);
    for label in [
        "raw ONNX Runtime, 1 thread",
        "raw ONNX Runtime, 2 threads",
        "drain through Kafka (4322 req/s)",
        "items/s per batch size (model.onnx)",
    ] {
        assert!(labels.contains(&label.to_owned()), "{label}: {labels:?}");
    }
    // log2 axis: the batch sizes' powers of two are tick labels.
    for tick in ["1", "8", "32", "128"] {
        assert!(labels.contains(&tick.to_owned()), "{tick}: {labels:?}");
    }
    // A marker per measured point; each line (2 px wide, unlike the axes) is a polyline plus
    // its legend sample.
    assert_eq!(svg.matches("<circle").count(), 8);
    let lines = |svg: &str| {
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(r#"stroke-width="2""#))
            .count()
    };
    assert_eq!(lines(&svg), 2 * 3);
    let without = batch_sizes_svg(&raws, None).unwrap();
    assert_eq!(lines(&without), 2 * 2);
    assert!(!texts(&without).iter().any(|t| t.starts_with("drain")));
    assert_eq!(lines(&batch_sizes_svg(&raws[..1], None).unwrap()), 2);
}

#[test]
fn a_report_without_a_drain_rate_or_batch_sizes_is_refused() {
    let steps: DrainReport =
        serde_json::from_str(r#"{"steps": [], "saturation_rps": 500.0}"#).unwrap();
    let err = steps
        .between_replies(Path::new("/tmp/steps.json"))
        .unwrap_err();
    assert!(err.to_string().contains("/tmp/steps.json"), "{err}");
    let empty: RawModelReport =
        serde_json::from_str(r#"{"intra_op_threads": 1, "points": []}"#).unwrap();
    assert!(matches!(
        batch_sizes_svg(&[empty], None),
        Err(PlotError::NoData(_))
    ));
}

#[test]
fn the_command_reads_the_reports_and_writes_the_svg() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("raw-1.json"), raw_json(1, [1.0, 2.0, 3.0, 4.0])).unwrap();
    std::fs::write(path("raw-2.json"), raw_json(2, [2.0, 3.0, 4.0, 5.0])).unwrap();
    std::fs::write(path("drain.json"), DRAIN).unwrap();
    let args = |drain: Option<PathBuf>, raw: &str| PlotArgs {
        chart: Chart::BatchSizes {
            raw: vec![path("raw-1.json"), path(raw)],
            drain,
            output: path("out.svg"),
        },
    };
    run(&args(Some(path("drain.json")), "raw-2.json")).unwrap();
    let svg = std::fs::read_to_string(path("out.svg")).unwrap();
    assert!(texts(&svg).contains(&"drain through Kafka (4322 req/s)".to_owned()));
    assert!(texts(&svg).contains(&"raw ONNX Runtime, 2 threads".to_owned()));

    let err = run(&args(None, "drain.json")).unwrap_err();
    assert!(
        err.to_string().contains("drain.json") && err.to_string().contains("bench-model"),
        "a drain report given as a raw one: {err}"
    );
    let err = run(&args(None, "missing.json")).unwrap_err();
    assert!(matches!(err, PlotError::Read { .. }), "{err}");
}

#[test]
fn the_subcommand_parses() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        plot: PlotArgs,
    }
    let cli = Cli::try_parse_from([
        "plot",
        "batch-sizes",
        "--raw",
        "a.json",
        "--raw",
        "b.json",
        "--drain",
        "d.json",
        "-o",
        "out.svg",
    ])
    .unwrap();
    let Chart::BatchSizes { raw, drain, output } = cli.plot.chart else {
        panic!("batch-sizes");
    };
    assert_eq!(raw, [PathBuf::from("a.json"), PathBuf::from("b.json")]);
    assert_eq!((drain, output), (Some("d.json".into()), "out.svg".into()));
    assert!(
        Cli::try_parse_from(["plot", "batch-sizes", "-o", "x.svg"]).is_err(),
        "--raw is required"
    );
}

#[test]
fn the_reports_the_commands_write_are_read() {
    use crate::bench::{BenchReport, ModelBenchReport, ModelPoint};
    let point = |batch, items_per_s| ModelPoint {
        batch,
        calls: 3,
        items_per_s,
        median_batch_us: 10.0,
        first_call_us: 30.0,
    };
    let model = ModelBenchReport {
        model: "m.onnx".into(),
        device: kbatch_core::config::Device::Cpu,
        activation_bytes_per_row: Some(4096),
        intra_op_threads: 2,
        compiled: true,
        load_ms: 120.0,
        seconds: 1.0,
        points: vec![point(1, 10.0), point(16, 90.0)],
        best: Some(point(16, 90.0)),
    };
    let raw: RawModelReport =
        serde_json::from_str(&serde_json::to_string(&model).unwrap()).unwrap();
    assert_eq!(raw.label(), "raw ONNX Runtime, 2 threads");
    assert_eq!(
        raw.points[1],
        RawPoint {
            batch: 16,
            items_per_s: 90.0
        }
    );

    let bench = BenchReport::sample();
    let drain: DrainReport = serde_json::from_str(&serde_json::to_string(&bench).unwrap()).unwrap();
    assert_eq!(
        drain.between_replies(Path::new("b.json")).ok(),
        bench.throughput.between_replies
    );
}
