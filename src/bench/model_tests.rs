//! Unit tests of `model`.

use super::*;

fn args(batch_sizes: Vec<usize>) -> ModelBenchArgs {
    ModelBenchArgs {
        source: ConfigSource {
            overrides: vec![format!(
                "model_registry.path={}/models",
                env!("CARGO_MANIFEST_DIR")
            )],
            ..ConfigSource::default()
        },
        batch_sizes,
        threads: Some(1),
        seconds: 0.05,
        output: ReportArgs::default(),
    }
}

#[test]
fn every_batch_size_runs_the_real_model_and_reports_its_rate() {
    let report = run_model_bench(&args(vec![1, 4])).expect("bench");
    let points = &report.points;
    assert_eq!(points.iter().map(|p| p.batch).collect::<Vec<_>>(), [1, 4]);
    let best = report.best.as_ref().expect("a best point");
    assert!(points.iter().all(|p| p.items_per_s <= best.items_per_s));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["points"][1]["batch"], 4);
    assert_eq!(json["best"]["batch"], best.batch);
    assert_eq!(json["intra_op_threads"], 1);
    let text = report.table().render();
    assert!(
        text.contains("items/s") && text.contains("median µs"),
        "{text}"
    );
    for p in points {
        assert!(p.calls > 0 && p.items_per_s > 0.0, "{p:?}");
        assert!(p.median_batch_us > 0.0, "{p:?}");
        // items/s is calls x batch over the measured time, and the measurement lasts at least
        // `seconds`. (Not a bound from the median call: on a loaded machine the mean call can be
        // well below the median, which once failed this test under a parallel test run.)
        let bound = p.calls as f64 * p.batch as f64 / 0.05;
        assert!(p.items_per_s <= bound, "{p:?} vs {bound}");
    }
}

#[test]
fn a_zero_batch_is_refused_before_the_model_loads() {
    let err = run_model_bench(&args(vec![8, 0])).unwrap_err();
    assert!(err.to_string().contains("positive"), "{err}");
}
