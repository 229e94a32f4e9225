//! Unit tests of the registry: names follow the convention, labels are pre-resolved, and the
//! exposition contains what was recorded.

use super::*;

#[test]
fn batch_size_buckets_extend_the_seed_list_to_the_configured_max() {
    assert_eq!(batch_size_buckets(32), [1., 5., 10., 20., 32.]);
    assert_eq!(
        batch_size_buckets(256),
        [1., 5., 10., 20., 32., 64., 128., 256.]
    );
    assert_eq!(batch_size_buckets(100), [1., 5., 10., 20., 32., 64., 100.]);
    assert_eq!(batch_size_buckets(8), [1., 5., 10., 20., 32.]);
}

#[test]
fn every_name_follows_the_convention() {
    let m = Metrics::new(64).expect("registry");
    assert!(m.names().len() >= 20, "{:?}", m.names());
    for n in m.names() {
        assert!(n.starts_with("kbatch_"), "{n}");
        let unit_or_total = [
            "_total",
            "_ms",
            "_bytes",
            "_ratio",
            "_requests",
            "_records",
            "_size",
            "_topics",
            "_per_second",
            // A 1-valued gauge whose labels carry the state (Prometheus `_info` convention).
            "_info",
        ];
        assert!(
            unit_or_total.iter().any(|u| n.ends_with(u)),
            "{n} has no unit suffix"
        );
    }
    for required in [
        "kbatch_prediction_latency_ms",
        "kbatch_batch_size",
        "kbatch_gpu_utilization_ratio",
        "kbatch_consumer_lag_records",
    ] {
        assert!(
            m.names().iter().any(|n| n == required),
            "{required} missing"
        );
    }
}

#[test]
fn the_exposition_shows_recorded_values_with_their_labels() {
    let m = Metrics::new(32).expect("registry");
    m.tier(Tier::High).replies[Status::Ok as usize].inc_by(3);
    m.tier(Tier::Low).queue_depth.set(7);
    m.batch(FlushReason::Full, 32);
    m.error(ErrorKind::Model);
    m.sync_reloads(0, 1);
    m.sync_reloads(0, 1);
    m.prediction_latency_ms.observe(30.0);
    let text = m.render();
    for line in [
        "kbatch_replies_total{status=\"OK\",tier=\"high\"} 3",
        "kbatch_batcher_queue_depth_requests{tier=\"low\"} 7",
        "kbatch_batcher_batches_total{flush_reason=\"full\"} 1",
        "kbatch_batch_size_bucket{le=\"32\"} 1",
        "kbatch_errors_total{error_type=\"model_error\",stage=\"inference\"} 1",
        "kbatch_errors_total{error_type=\"reload_rejected\",stage=\"config\"} 1",
        "kbatch_config_reloads_total{result=\"rejected\"} 1",
        "kbatch_prediction_latency_ms_bucket{le=\"25\"} 0",
        "kbatch_prediction_latency_ms_bucket{le=\"50\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    // Pre-resolved series are exported at zero before anything happens.
    assert!(text.contains("kbatch_replies_total{status=\"MODEL_ERROR\",tier=\"critical\"} 0"));
}

#[test]
fn statuses_map_to_errors_except_ok() {
    assert_eq!(ErrorKind::of_status(Status::Ok), None);
    for s in Status::ALL.into_iter().skip(1) {
        assert!(ErrorKind::of_status(s).is_some(), "{s:?}");
    }
    let mut types: Vec<_> = ErrorKind::ALL.iter().map(|e| e.labels().0).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(
        types.len(),
        ErrorKind::ALL.len(),
        "error types are distinct"
    );
}

#[test]
fn lag_series_are_replaced_not_accumulated() {
    let m = Metrics::new(32).expect("registry");
    m.consumer_lag.with_label_values(&["t.low", "3"]).set(5);
    m.consumer_lag.reset();
    m.consumer_lag.with_label_values(&["t.low", "0"]).set(7);
    let text = m.render();
    assert!(
        text.contains("kbatch_consumer_lag_records{partition=\"0\",topic=\"t.low\"} 7"),
        "{text}"
    );
    assert!(
        !text.contains("partition=\"3\""),
        "a revoked partition's lag is gone"
    );
}
