//! Unit tests of `settlement`.

use super::*;
use crate::kafka::reply::record::{Note, Pending};
use crate::pipeline::Origin;
use crate::tier::Tier;
use crate::wire::Timings;

fn job(kind: Kind, origin: Origin, finishes: bool) -> Job {
    Job {
        pending: Pending { origin, kind },
        attempt: 1,
        then: None,
        finishes,
    }
}

#[test]
fn only_the_last_part_of_an_outcome_marks_its_origin_done() {
    let tracker = SharedTracker::new();
    let epoch = tracker.assign(Tier::Low, 0);
    tracker.track(Tier::Low, 0, 7);
    let origin = Origin {
        topic_tier: Tier::Low,
        partition: 0,
        offset: 7,
        epoch,
    };
    let note = Note {
        tier: Tier::Low,
        timings: Timings::default(),
        ready: std::time::Instant::now(),
    };
    let mut settlement = Settlement::new(
        tracker.clone(),
        Telemetry::new(&Default::default()).expect("telemetry"),
    );
    settlement.acknowledged(&job(Kind::DeadLetter(note), origin, false));
    assert_eq!(
        tracker.total_pending(),
        1,
        "the poison letter alone is not done"
    );
    settlement.acknowledged(&job(Kind::Reply(Status::ModelError, note), origin, true));
    assert_eq!(tracker.total_pending(), 0);
    settlement.acknowledged(&job(Kind::ReplyFallback(note), origin, true));
    let report = settlement.into_report();
    assert_eq!(report.replies_with(Status::ModelError), 1);
    assert_eq!(report.total_replies(), 1);
    assert_eq!((report.dead_letters, report.reply_fallbacks), (2, 1));
}
