//! Unit tests of `report`.

use super::*;
use crate::pipeline::{FlushCounts, FlushReason};

fn report() -> ServeReport {
    let mut replier = ReplierReport::default();
    replier.replies[Status::Ok as usize] = 9990;
    replier.replies[Status::InvalidInput as usize] = 10;
    replier.dead_letters = 16;
    let mut by_reason = FlushCounts::default();
    by_reason.set(FlushReason::Full, 300);
    by_reason.set(FlushReason::Timeout, 100);
    let batcher = BatcherReport {
        batches: 400,
        requests: 9990,
        by_reason,
        ..BatcherReport::default()
    };
    ServeReport {
        consumer: ConsumerReport {
            consumed: 10016,
            admitted: 9990,
            dead_lettered: 16,
            invalid: 10,
            ..ConsumerReport::default()
        },
        batcher,
        workers: vec![
            WorkerReport {
                batches: 250,
                inference_us: 1_500_000,
                ..WorkerReport::default()
            },
            WorkerReport {
                batches: 150,
                inference_us: 500_000,
                ..WorkerReport::default()
            },
        ],
        replier,
    }
}

#[test]
fn summary_adds_up_the_workers_and_names_every_status() {
    let s = report().summary();
    assert_eq!(s.inference.workers, 2);
    assert_eq!(s.inference.calls, 400);
    assert_eq!(s.inference.model_seconds, 2.0);
    assert_eq!(s.batching.mean_batch_size, 9990.0 / 400.0);
    assert_eq!(s.replies.total, 10_000);
    assert_eq!(s.replies.by_status.get("OK"), 9990);
    assert_eq!(s.replies.by_status.get("INVALID_INPUT"), 10);
    let names: Vec<&str> = s
        .replies
        .by_status
        .0
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, all, "every status, in wire order");
    assert_eq!(s.batching.closed_by.get("timeout"), 100);
}

#[test]
fn json_keys_are_stable_and_statuses_keyed_by_name() {
    let json = serde_json::to_value(report()).unwrap();
    for section in ["intake", "batching", "inference", "replies"] {
        assert!(json[section].is_object(), "{section} in {json}");
    }
    assert_eq!(json["intake"]["consumed"], 10016);
    assert_eq!(json["intake"]["dead_lettered"], 16);
    assert_eq!(json["intake"]["final_commit_failed"], false);
    assert_eq!(json["batching"]["closed_by"]["full"], 300);
    assert_eq!(json["inference"]["calls"], 400);
    assert_eq!(json["replies"]["total"], 10_000);
    assert_eq!(json["replies"]["dead_letters"], 16);
    assert_eq!(json["replies"]["by_status"]["OK"], 9990);
    assert_eq!(json["replies"]["by_status"]["INVALID_INPUT"], 10);
    assert_eq!(json["replies"]["by_status"]["MODEL_ERROR"], 0);
    let text = serde_json::to_string(&report()).unwrap();
    assert!(
        text.contains(r#""by_status":{"OK":9990,"INVALID_INPUT":10,"DEADLINE_EXCEEDED":0"#),
        "statuses in wire order: {text}"
    );
}

#[test]
fn table_labels_every_figure() {
    let text = report().to_string();
    let has_row = |label: &str, value: &str| {
        text.lines().any(|l| {
            let l = l.trim();
            l.starts_with(label) && l.ends_with(value) && l[label.len()..].trim() == value
        })
    };
    assert!(has_row("consumed", "10016"), "{text}");
    assert!(has_row("dead-lettered", "16"), "{text}");
    assert!(has_row("OK", "9990"), "{text}");
    assert!(has_row("INVALID_INPUT", "10"), "{text}");
    assert!(has_row("total", "10000"), "{text}");
    assert!(has_row("closed: full", "300"), "{text}");
    assert!(has_row("time in the model", "2.00 s"), "{text}");
    assert!(has_row("final commit", "ok"), "{text}");
    for heading in ["intake", "batching", "inference", "replies"] {
        assert!(text.lines().any(|l| l == heading), "{heading}: {text}");
    }
}

#[test]
fn log_field_lists_non_zero_statuses_by_name() {
    let s = report().summary();
    assert_eq!(s.replies.by_status.non_zero(), "OK=9990 INVALID_INPUT=10");
    assert_eq!(Counts::default().non_zero(), "none");
}
