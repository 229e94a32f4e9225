//! The collector's matching and tallies, on hand-made replies (no broker).

use super::*;
use crate::bench::TierMix;
use kbatch_core::wire::{Outputs, Timings};

fn reply(id: &str, status: Status, batch: i32) -> Reply {
    Reply {
        request_id: id.to_owned(),
        status,
        error: None,
        model_name: "m".into(),
        model_version: "1".into(),
        outputs: Outputs::V1 {
            output_shape: vec![3],
            outputs: vec![0.2, 0.3, 0.5],
        },
        tier: Tier::Normal,
        timings: Timings {
            queue_wait_us: 10,
            batch_size: batch,
            inference_us: 100,
            end_to_end_us: 500,
        },
        completed_at_ms: 0,
    }
}

fn fixture(n: u64, bad: f64) -> (Matcher, Arc<SendLog>, Instant) {
    let base = Instant::now();
    let plan = Arc::new(Plan::new(n, &TierMix::default(), bad, 11));
    let log = Arc::new(SendLog::new(n as usize, base));
    let m = Matcher::new(RequestIds::new("run1"), plan, log.clone());
    (m, log, base)
}

#[test]
fn first_reply_answers_and_later_ones_are_duplicates() {
    let (mut m, log, base) = fixture(10, 0.0);
    log.mark_sent(3, base + Duration::from_millis(5));
    let got = m.on_reply(
        &reply("run1-3", Status::Ok, 4),
        base + Duration::from_millis(12),
    );
    let Match::Answered { seq, latency, .. } = got else {
        panic!("expected an answer, got {got:?}");
    };
    assert_eq!((seq, latency), (3, Duration::from_millis(7)));
    let again = m.on_reply(
        &reply("run1-3", Status::Ok, 4),
        base + Duration::from_millis(20),
    );
    assert_eq!(again, Match::Duplicate { seq: 3 });
    let t = m.tally();
    assert_eq!((t.answered, t.duplicates, t.unknown), (1, 1, 0));
    assert_eq!(t.statuses[Status::Ok as usize], 1);
    assert_eq!(t.batch_sizes.len(), 1);
    assert_eq!(t.last_reply, Some(base + Duration::from_millis(20)));
    let tier = m.plan.tier(3);
    let h = &t.latency[tier.index()];
    assert_eq!(h.len(), 1);
    // hdrhistogram keeps three significant digits: 7,000 µs within 0.1 %.
    assert!(h.value_at_quantile(0.5).abs_diff(7000) <= 7);
}

#[test]
fn foreign_unsent_failed_and_out_of_range_ids_are_unknown() {
    let (mut m, log, base) = fixture(10, 0.0);
    log.mark_sent(1, base);
    log.mark_failed(1);
    let at = base + Duration::from_millis(1);
    for id in [
        "other-1", "run1-1", "run1-2", "run1-10", "run1-x", "run1-01",
    ] {
        assert_eq!(
            m.on_reply(&reply(id, Status::Ok, 1), at),
            Match::Unknown,
            "{id}"
        );
    }
    assert_eq!(
        m.on_reply(&reply("run1-w0", Status::Ok, 1), at),
        Match::WarmUp
    );
    let t = m.tally();
    assert_eq!((t.answered, t.unknown, t.warm_up), (0, 6, 1));
    assert_eq!(
        t.first_reply, None,
        "unknown replies do not start the reply clock"
    );
}

#[test]
fn statuses_that_contradict_the_request_kind_are_flagged() {
    let (mut m, log, base) = fixture(2000, 0.5);
    let (valid, invalid) = {
        let p = &m.plan;
        let find = |k| (0..p.len()).find(|&s| p.kind(s) == k).unwrap();
        (find(Kind::Valid), find(Kind::Invalid))
    };
    for s in [valid, invalid] {
        log.mark_sent(s, base);
    }
    let at = base + Duration::from_millis(1);
    m.on_reply(
        &reply(&format!("run1-{valid}"), Status::InvalidInput, 0),
        at,
    );
    m.on_reply(
        &reply(&format!("run1-{invalid}"), Status::InvalidInput, 0),
        at,
    );
    assert_eq!(m.tally().unexpected_status, 1);
    assert_eq!(m.tally().statuses[Status::InvalidInput as usize], 2);
    assert_eq!(
        m.tally().batch_sizes.len(),
        0,
        "only OK replies carry batch sizes"
    );
}

#[test]
fn snapshot_covers_the_interval_and_resets_it() {
    let (mut m, log, base) = fixture(10, 0.0);
    for s in 0..4 {
        log.mark_sent(s, base);
        m.on_reply(
            &reply(&format!("run1-{s}"), Status::Ok, 2 * (s as i32 + 1)),
            base,
        );
    }
    let s = m.snapshot(m.started + Duration::from_secs(2));
    assert_eq!(s.answered, 4);
    assert_eq!(s.interval_answered, 4);
    assert_eq!(s.tiers.iter().map(|t| t.count).sum::<u64>(), 4);
    assert_eq!(s.batch_mean, Some(5.0));
    assert_eq!(s.statuses, vec![(Status::Ok, 4)]);
    assert!(s.to_string().contains("OK=4"), "{s}");
    let next = m.snapshot(m.started + Duration::from_secs(3));
    assert_eq!((next.answered, next.interval_answered), (4, 0));
    assert_eq!(next.rate(), 0.0);
    assert_eq!(next.batch_mean, None);
}

#[test]
fn stages_split_the_end_to_end_time() {
    let t = Timings {
        queue_wait_us: 2_000,
        batch_size: 8,
        inference_us: 1_000,
        end_to_end_us: 10_000,
    };
    // 7 ms before admission, 2 queued, 1 inferring, and the reply took the client's 15 − 10.
    assert_eq!(Stage::split(&t, 15_000), Some([7_000, 2_000, 1_000, 5_000]));
    // A server that measured nothing gives no parts rather than a made-up intake.
    let unmeasured = Timings {
        end_to_end_us: 0,
        ..t
    };
    assert_eq!(Stage::split(&unmeasured, 15_000), None);
}

#[test]
fn ok_replies_are_tallied_by_stage_and_tier() {
    let (mut m, log, base) = fixture(4, 0.0);
    log.mark_sent(1, base);
    m.on_reply(
        &reply("run1-1", Status::Ok, 4),
        base + Duration::from_millis(2),
    );
    let tier = m.plan.tier(1);
    let t = m.tally();
    let stages = &t.stages[tier.index()];
    // The fixture's timings: 500 µs server time of which 10 queued and 100 inferring.
    assert_eq!(stages[Stage::Intake as usize].max(), 390);
    assert_eq!(stages[Stage::Queue as usize].max(), 10);
    assert_eq!(stages[Stage::Inference as usize].max(), 100);
    assert!(stages[Stage::Reply as usize].equivalent(stages[Stage::Reply as usize].max(), 1_500));
    let others: u64 = Tier::ALL
        .iter()
        .filter(|&&x| x != tier)
        .map(|x| t.stages[x.index()][0].len())
        .sum();
    assert_eq!(others, 0);
}
