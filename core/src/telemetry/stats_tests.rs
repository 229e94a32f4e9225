//! Unit tests of `stats`.

use super::*;

fn ok(tier: Tier, e2e_ms: i64) -> Delivered {
    Delivered {
        tier,
        status: Some(Status::Ok),
        timings: Timings {
            queue_wait_us: 2_000,
            batch_size: 8,
            inference_us: 1_000,
            end_to_end_us: e2e_ms * 1000 - 500,
        },
        reply_us: 500,
        fallback: false,
    }
}

#[test]
fn the_snapshot_adds_up_what_was_delivered() {
    let s = Stats::new();
    for i in 0..98 {
        s.delivered(&ok(Tier::ALL[i % 2], 10));
    }
    s.delivered(&ok(Tier::Low, 1000));
    let timeout = Delivered {
        status: Some(Status::DeadlineExceeded),
        ..ok(Tier::Low, 50)
    };
    let n = s.delivered(&timeout);
    assert_eq!(n, 100);
    s.batch(8);
    s.batch(4);
    let snap = s.snapshot();
    assert_eq!(snap.total_requests, 100);
    assert_eq!(snap.completed_ok, 99);
    assert!((snap.error_rate - 0.01).abs() < 1e-9);
    assert!((snap.timeout_rate - 0.01).abs() < 1e-9);
    assert_eq!(snap.average_batch_size, 6.0);
    assert_eq!(snap.priority_distribution[0], ("critical".into(), 49, 0.49));
    assert_eq!(snap.priority_distribution[3].1, 2);
    assert!(
        (snap.latency_ms.p50 - 10.0).abs() < 0.05,
        "{:?}",
        snap.latency_ms
    );
    assert!(
        (snap.latency_ms.max - 1000.0).abs() < 1.0,
        "{:?}",
        snap.latency_ms
    );
    let b = &snap.time_breakdown;
    assert!((b.queue_wait_ms - 2.0).abs() < 1e-9);
    assert!((b.inference_ms - 1.0).abs() < 1e-9);
    assert!((b.reply_ms - 0.5).abs() < 1e-9);
    // 10 ms end to end = 6.5 in Kafka + 2 queue + 1 model + 0.5 reply (most requests).
    assert!(b.kafka_in_ms > 6.4 && b.kafka_in_ms < 17.0, "{b:?}");
}

#[test]
fn deliveries_with_extreme_end_to_end_times_add_up_without_overflow() {
    let stats = Stats::new();
    let mut n = 0;
    for end_to_end_us in [i64::MAX, i64::MAX, 0, i64::MIN] {
        let d = Delivered {
            tier: Tier::Low,
            status: Some(Status::Ok),
            timings: Timings {
                queue_wait_us: 5,
                batch_size: 1,
                inference_us: 7,
                end_to_end_us,
            },
            reply_us: i64::MAX,
            fallback: false,
        };
        assert!(d.end_to_end_us() >= end_to_end_us.min(0));
        n = stats.delivered(&d);
    }
    assert_eq!(n, 4, "all four counted");
}
