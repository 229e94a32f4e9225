//! Unit tests of `report`.

use std::time::Duration;

use super::*;
use crate::bench::collector::Matcher;
use crate::bench::{RecordFormat, RequestIds, TierMix};
use kbatch_core::config::{Framing, TierTopics, WireConfig};
use kbatch_core::wire::SchemaVersion;
use kbatch_core::wire::{Outputs, Reply, Timings};

/// An OK critical-tier reply to `request_id` from a batch of `batch_size`.
fn ok_reply(request_id: String, batch_size: i32) -> Reply {
    Reply {
        request_id,
        status: Status::Ok,
        error: None,
        model_name: "m".into(),
        model_version: "1".into(),
        outputs: Outputs::V1 {
            output_shape: vec![3],
            outputs: vec![0.0; 3],
        },
        tier: Tier::Critical,
        timings: Timings {
            batch_size,
            ..Timings::default()
        },
        completed_at_ms: 0,
    }
}

#[test]
fn throughput_uses_both_spans() {
    let t0 = Instant::now();
    let t = Throughput::compute(
        1000,
        Some(t0),
        Some(t0 + Duration::from_millis(500)),
        Some(t0 + Duration::from_millis(2500)),
    );
    assert_eq!(t.from_first_send, Some(400.0));
    assert_eq!(t.between_replies, Some(500.0));
    assert_eq!(t.first_send_to_last_reply_s, Some(2.5));
    assert_eq!(t.first_to_last_reply_s, Some(2.0));
}

#[test]
fn throughput_is_undefined_without_a_span() {
    let t0 = Instant::now();
    let none = Throughput::compute(0, Some(t0), None, None);
    assert_eq!((none.from_first_send, none.between_replies), (None, None));
    let one = Throughput::compute(1, Some(t0), Some(t0), Some(t0));
    assert_eq!(one.between_replies, None);
    assert_eq!(one.from_first_send, None, "zero-length span");
}

#[test]
fn latency_summary_of_an_empty_histogram_is_zero() {
    let l = LatencySummary::of("low", &latency_histogram());
    assert_eq!((l.count, l.p99_us, l.max_us, l.mean_us), (0, 0, 0, 0.0));
}

impl BenchReport {
    /// A run of 100 critical requests sent 10 ms apart, the first 90 answered OK after
    /// (sequence + 1) ms from batches of 8, request 0 twice: for tests here and of reports
    /// that embed this one (the demo's).
    pub(crate) fn sample() -> Self {
        let spec = RunSpec {
            brokers: "b:9092".into(),
            properties: vec![],
            topics: TierTopics::default(),
            reply_topic: "replies".into(),
            reply_from_start: true,
            wire: WireConfig::default(),
            format: RecordFormat {
                framing: Framing::Confluent,
                contract: SchemaVersion::V1,
            },
            correlation_header: "correlation-id".into(),
            total: 100,
            rate: 100.0,
            mix: TierMix::new([1, 0, 0, 0]).unwrap(),
            bad_fraction: 0.0,
            timeout_ms: None,
            seed: 1,
            wait: Duration::from_secs(1),
            run_id: "r".into(),
        };
        let base = Instant::now();
        let plan = std::sync::Arc::new(Plan::new(100, &spec.mix, 0.0, 1));
        let log = std::sync::Arc::new(SendLog::new(100, base));
        let mut m = Matcher::new(RequestIds::new("r"), plan.clone(), log.clone());
        // 100 sent 10 ms apart; the first 90 answered after (seq + 1) ms; seq 0 twice.
        for seq in 0..100u64 {
            log.mark_sent(seq, base + Duration::from_millis(10 * seq));
        }
        for seq in (0..90u64).chain([0]) {
            let r = ok_reply(format!("r-{seq}"), 8);
            let at = base + Duration::from_millis(11 * seq + 1);
            m.on_reply(&r, at);
        }
        let sent = Sent {
            attempted: 100,
            delivered: 100,
            first_send: Some(base),
            last_send: Some(base + Duration::from_millis(990)),
            ..Sent::default()
        };
        BenchReport::build(&spec, &plan, &log, &sent, &m.into_tally())
    }
}

#[test]
fn report_counts_missing_duplicates_and_percentiles() {
    let r = BenchReport::sample();
    assert_eq!(
        (r.expected_replies, r.answered, r.missing, r.duplicates),
        (100, 90, 10, 1)
    );
    assert_eq!(r.statuses.get("OK"), Some(&90));
    let crit = &r.latency[0];
    assert_eq!((crit.tier.as_str(), crit.count), ("critical", 90));
    // Latency of seq s is s + 1 ms: 1..=90 ms.
    assert!(crit.p50_us.abs_diff(45_000) <= 1_000, "{}", crit.p50_us);
    assert!(crit.max_us.abs_diff(90_000) <= 90, "{}", crit.max_us);
    assert_eq!(r.latency[4].tier, "all");
    assert_eq!(r.latency[4].count, 90);
    assert_eq!(r.batch_size.as_ref().map(|b| b.max), Some(8));
    // Last reply at 11 × 89 + 1 = 980 ms after the first send, first reply at 1 ms.
    assert!((r.throughput.from_first_send.unwrap() - 90.0 / 0.980).abs() < 0.01);
    assert!((r.throughput.between_replies.unwrap() - 90.0 / 0.979).abs() < 0.01);
    let text = r.table().render();
    let row = |label: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(label) && l[label.len()..].starts_with("  "))
            .map(|l| l[label.len()..].trim().to_owned())
    };
    assert_eq!(row("expected").as_deref(), Some("100"), "{text}");
    assert_eq!(row("answered").as_deref(), Some("90"), "{text}");
    assert_eq!(row("missing").as_deref(), Some("10"), "{text}");
    assert_eq!(row("duplicates").as_deref(), Some("1"), "{text}");
    assert_eq!(
        row("OK").as_deref(),
        Some("90"),
        "status named with its count: {text}"
    );
    assert!(
        row("critical").is_some_and(|r| r.starts_with("90 ")),
        "{text}"
    );
    assert!(row("low").is_none(), "empty tiers are left out: {text}");
    assert!(row("all").is_some(), "{text}");
    assert!(
        !text.contains("by send time"),
        "one window: no per-window table"
    );
    let mut long = r.clone();
    long.windows = ["0-10s", "10-20s"]
        .iter()
        .zip([5_000, 45_000])
        .map(|(name, p99_us)| LatencySummary {
            tier: (*name).to_owned(),
            count: 10,
            p50_us: 1_000,
            p90_us: 2_000,
            p99_us,
            p999_us: p99_us,
            max_us: p99_us,
            mean_us: 1_500.0,
        })
        .collect();
    let text = long.table().render();
    assert!(text.contains("latency by send time"), "{text}");
    let window = text
        .lines()
        .find(|l| l.trim_start().starts_with("10-20s"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = window.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["10-20s", "10", "1.00", "2.00", "45.00"],
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["missing"], 10);
    assert_eq!(json["tier_mix"]["critical"], 1);
    assert_eq!(json["tier_mix"]["low"], 0);
    assert_eq!(json["planned_per_tier"]["critical"], 100);
    assert_eq!(json["latency"][0]["tier"], "critical");
}

#[test]
fn latency_is_also_reported_per_ten_second_window_of_send_time() {
    let mix = TierMix::new([1, 0, 0, 0]).unwrap();
    let base = Instant::now();
    let plan = std::sync::Arc::new(Plan::new(100, &mix, 0.0, 1));
    let log = std::sync::Arc::new(SendLog::new(100, base));
    let mut m = Matcher::new(RequestIds::new("w"), plan, log.clone());
    m.restart_clock(base);
    // Sent 300 ms apart (0 to 29.7 s); answered after 5 ms, then 50 ms from seq 67 on.
    for seq in 0..100u64 {
        let sent = base + Duration::from_millis(300 * seq);
        log.mark_sent(seq, sent);
        let r = ok_reply(format!("w-{seq}"), 0);
        let latency = if seq < 67 { 5 } else { 50 };
        m.on_reply(&r, sent + Duration::from_millis(latency));
    }
    let w = &m.tally().windows;
    let counts: Vec<u64> = w.iter().map(|h| h.len()).collect();
    assert_eq!(
        counts,
        [34, 33, 33],
        "sends at 0..=9.9 s, 10.2..=19.8 s, 20.1..=29.7 s"
    );
    let p99_ms: Vec<u64> = w.iter().map(|h| h.value_at_quantile(0.99) / 1000).collect();
    assert_eq!(p99_ms, [5, 5, 50]);
}

#[test]
fn where_the_time_went_is_reported_per_tier() {
    let r = BenchReport::sample();
    assert!(r.stages.is_empty(), "no server timings: no breakdown");
    assert!(!r.table().render().contains("where the time went"));

    let mut long = r.clone();
    long.stages = vec![StageBreakdown {
        tier: "critical".into(),
        count: 90,
        stages: Stage::ALL
            .iter()
            .zip([40_000u64, 2_000, 1_000, 6_000])
            .map(|(s, p99)| StagePart {
                stage: s.as_str(),
                p50_us: p99 / 2,
                p99_us: p99,
            })
            .collect(),
    }];
    let text = long.table().render();
    let row = text
        .lines()
        .skip_while(|l| !l.contains("where the time went"))
        .find(|l| l.trim_start().starts_with("critical"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "critical", "90", "20.0", "/", "40.0", "1.0", "/", "2.0", "0.5", "/", "1.0", "3.0",
            "/", "6.0"
        ],
        "{text}"
    );
    let json = serde_json::to_value(&long).unwrap();
    assert_eq!(json["stages"][0]["stages"][0]["stage"], "intake");
    assert_eq!(json["stages"][0]["stages"][3]["p99_us"], 6_000);
}
