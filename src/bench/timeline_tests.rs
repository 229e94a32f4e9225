//! Unit tests of `timeline`: buckets by send and receive second, per-second percentiles, the
//! JSON form and step concatenation.

use std::sync::Arc;

use super::*;
use crate::bench::collector::Matcher;
use crate::bench::{Plan, RequestIds, TierMix};
use kbatch_core::wire::{Outputs, Reply, Status, Timings};

fn ok_reply(id: String) -> Reply {
    Reply {
        request_id: id,
        status: Status::Ok,
        error: None,
        model_name: "m".into(),
        model_version: "1".into(),
        outputs: Outputs::V1 {
            output_shape: vec![3],
            outputs: vec![0.0; 3],
        },
        tier: Tier::Critical,
        timings: Timings::default(),
        completed_at_ms: 0,
    }
}

/// `n` requests of the tiers of `mix`, request `s` sent at `sent_ms(s)` and answered
/// `latency_ms(s)` later; the timeline the report would carry.
fn run(
    n: u64,
    mix: [u32; 4],
    sent_ms: impl Fn(u64) -> u64,
    latency_us: impl Fn(u64) -> u64,
) -> (Timeline, Arc<Plan>) {
    let base = Instant::now();
    let plan = Arc::new(Plan::new(n, &TierMix::new(mix).unwrap(), 0.0, 3));
    let log = Arc::new(SendLog::new(n as usize, base));
    let mut m = Matcher::new(RequestIds::new("t"), plan.clone(), log.clone());
    for s in 0..n {
        log.mark_sent(s, base + Duration::from_millis(sent_ms(s)));
    }
    for s in 0..n {
        let at = base + Duration::from_millis(sent_ms(s)) + Duration::from_micros(latency_us(s));
        m.on_reply(&ok_reply(format!("t-{s}")), at);
    }
    let tally = m.into_tally();
    let origin = tally.origin.expect("set by the first reply");
    assert_eq!(origin, base, "the first send is the origin");
    (
        Timeline::build(&tally.seconds, &sends_per_second(&log, origin)),
        plan,
    )
}

/// Within the two significant digits the per-second histograms keep.
fn near(got: u64, want: u64) -> bool {
    got.abs_diff(want) as f64 <= want as f64 * 0.01 + 16.0
}

#[test]
fn requests_sent_in_second_k_land_in_bucket_k_with_their_percentiles() {
    // 300 critical requests 10 ms apart: 100 in each of seconds 0, 1 and 2 (request 100 is sent
    // at exactly 1.000 s, request 99 at 0.990 s). Latency: 1..=100 ms in second 0, 5 ms flat in
    // second 1, 200 ms flat in second 2.
    let latency = |s: u64| match s / 100 {
        0 => (s % 100 + 1) * 1000,
        1 => 5_000,
        _ => 200_000,
    };
    let (t, _) = run(300, [1, 0, 0, 0], |s| 10 * s, latency);
    assert_eq!(t.bucket_s, 1.0);
    // Second 3 holds only replies (to second 2's sends, 200 ms late).
    assert_eq!(t.points.len(), 4);
    assert_eq!(
        t.points.iter().map(|p| p.t_s).collect::<Vec<_>>(),
        [0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        t.points.iter().map(|p| p.sent).collect::<Vec<_>>(),
        [100, 100, 100, 0]
    );
    let crit: Vec<SecondLatency> = t.points[..3]
        .iter()
        .map(|p| p.latency.critical.expect("critical latency"))
        .collect();
    assert!(crit.iter().all(|l| l.count == 100), "{crit:?}");
    assert!(near(crit[0].p50_us, 50_000), "{:?}", crit[0]);
    assert!(near(crit[0].p99_us, 99_000), "{:?}", crit[0]);
    assert!(near(crit[0].max_us, 100_000), "{:?}", crit[0]);
    assert!(near(crit[1].p50_us, 5_000) && near(crit[1].p99_us, 5_000));
    assert!(near(crit[2].p50_us, 200_000) && near(crit[2].p99_us, 200_000));
    assert_eq!(
        t.points[3].latency.critical, None,
        "nothing was sent in second 3"
    );
    for p in &t.points {
        assert_eq!(
            (p.latency.high, p.latency.normal, p.latency.low),
            (None, None, None)
        );
    }
    // Replies by receive second, counted by hand.
    let mut want = [0u64; 4];
    for s in 0..300 {
        want[((10 * s * 1000 + latency(s)) / 1_000_000) as usize] += 1;
    }
    assert_eq!(t.points.iter().map(|p| p.replies).collect::<Vec<_>>(), want);
    assert_eq!(want[3], 20, "sent from 2.8 s on, answered 200 ms later");
    assert_eq!(t.tiers(), [Tier::Critical]);
    assert_eq!(t.end_s(), 4.0);
}

#[test]
fn each_tier_gets_its_own_series_per_second() {
    // Critical answered in 2 ms, low in 40 ms, 50 requests a second for 2 s.
    let plan_tier = |plan: &Plan, s: u64| plan.tier(s);
    let base_plan = Plan::new(100, &TierMix::new([1, 0, 0, 1]).unwrap(), 0.0, 3);
    let latency = move |s: u64| match plan_tier(&base_plan, s) {
        Tier::Critical => 2_000,
        _ => 40_000,
    };
    let (t, plan) = run(100, [1, 0, 0, 1], |s| 20 * s, latency);
    assert_eq!(t.tiers(), [Tier::Critical, Tier::Low]);
    for (k, p) in t.points.iter().take(2).enumerate() {
        let sent_here = |tier| {
            (50 * k as u64..50 * (k as u64 + 1))
                .filter(|&s| plan.tier(s) == tier)
                .count() as u64
        };
        let c = p.latency.critical.expect("critical");
        let l = p.latency.low.expect("low");
        assert_eq!(
            (c.count, l.count),
            (sent_here(Tier::Critical), sent_here(Tier::Low))
        );
        assert!(
            near(c.p99_us, 2_000) && near(l.p99_us, 40_000),
            "{c:?} {l:?}"
        );
        assert_eq!(p.latency.high, None);
    }
}

#[test]
fn the_json_form_names_tiers_and_reads_back() {
    let (t, _) = run(10, [1, 0, 0, 0], |s| 100 * s, |_| 3_000);
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["bucket_s"], 1.0);
    let p = &json["points"][0];
    assert_eq!(
        (p["t_s"].as_f64(), p["sent"].as_u64()),
        (Some(0.0), Some(10))
    );
    assert_eq!(p["latency"]["critical"]["count"], 10);
    assert!(p["latency"]["high"].is_null());
    assert!(json.get("marks").is_none(), "a single run has no marks");
    let back: Timeline = serde_json::from_value(json).unwrap();
    assert_eq!(back, t);
}

#[test]
fn concat_puts_steps_on_one_axis_with_a_mark_at_each_start() {
    let (a, _) = run(20, [1, 0, 0, 0], |s| 100 * s, |_| 3_000);
    let (b, _) = run(40, [1, 0, 0, 0], |s| 50 * s, |_| 9_000);
    let all = Timeline::concat([(0.0, &a, "10/s".into()), (2.5, &b, "20/s".into())]);
    assert_eq!(
        all.marks,
        [
            TimelineMark {
                t_s: 0.0,
                label: "10/s".into()
            },
            TimelineMark {
                t_s: 2.5,
                label: "20/s".into()
            }
        ]
    );
    assert_eq!(all.points.len(), a.points.len() + b.points.len());
    assert_eq!(
        all.points.iter().map(|p| p.t_s).collect::<Vec<_>>(),
        [0.0, 1.0, 2.5, 3.5]
    );
    assert_eq!(all.points[2].sent, 20);
    assert!(near(all.points[3].latency.critical.unwrap().p99_us, 9_000));
}

#[test]
fn per_second_histograms_grow_to_the_largest_latency_and_clamp_at_an_hour() {
    let mut s = Seconds::default();
    s.record(Tier::High, 0, 0, 7);
    s.record(Tier::High, 0, 5, 12_345_678);
    s.record(Tier::High, 0, 9, u64::MAX);
    let h = s.latency(0, Tier::High).unwrap();
    assert_eq!(h.len(), 3);
    assert!(h.value_at_quantile(0.5).abs_diff(12_345_678) <= 123_457);
    assert!(h.max().abs_diff(MAX_US) <= MAX_US / 100);
    assert_eq!(
        (s.replies(0), s.replies(5), s.replies(9), s.replies(10)),
        (1, 1, 1, 0)
    );
    assert!(s.latency(0, Tier::Low).is_none() && s.latency(1, Tier::High).is_none());
}

#[test]
fn a_backlog_counts_latency_by_the_second_of_its_reply() {
    // Everything sent at once, answered over three seconds: one point per reply second, and the
    // latency that second's replies had.
    let mut s = Seconds::new(LatencyBy::Reply);
    for (received_s, us) in [(0, 500_000), (1, 1_500_000), (2, 2_500_000), (2, 2_600_000)] {
        s.record(Tier::Low, 0, received_s, us);
    }
    let t = Timeline::build(&s, &[4]);
    assert_eq!(t.latency_by, LatencyBy::Reply);
    let counts: Vec<u64> = t
        .points
        .iter()
        .map(|p| p.latency.low.as_ref().map_or(0, |l| l.count))
        .collect();
    assert_eq!(counts, [1, 1, 2]);
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["latency_by"], "reply");
    // Paced runs keep the send second: all four in bucket 0.
    let mut paced = Seconds::default();
    for (received_s, us) in [(0, 500_000), (1, 1_500_000)] {
        paced.record(Tier::Low, 0, received_s, us);
    }
    let t = Timeline::build(&paced, &[2]);
    assert_eq!(t.points[0].latency.low.as_ref().map(|l| l.count), Some(2));
    assert!(t.points[1].latency.low.is_none());
}
