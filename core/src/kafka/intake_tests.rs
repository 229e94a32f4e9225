//! Unit tests of the intake: stash order, pause/resume decisions, revoke and close.

use tokio::time::Instant;

use tokio::sync::mpsc::{channel, Receiver};

use super::*;
use crate::pipeline::fixtures;

fn admitted(topic: Tier, served: Tier, partition: i32, offset: i64) -> Admitted {
    let id = format!("{topic}-{partition}-{offset}");
    fixtures::admitted(&id, (topic, partition, offset), served, Instant::now())
}

fn intake(capacity: usize) -> (Intake, Vec<Receiver<Admitted>>) {
    let (intake, rxs, _outcomes) = intake_with_outcomes(capacity, 16, QueueFull::Pause);
    (intake, rxs)
}

fn intake_with_outcomes(
    capacity: usize,
    outcome_capacity: usize,
    when_full: QueueFull,
) -> (Intake, Vec<Receiver<Admitted>>, Receiver<Outcome>) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| channel(capacity)).unzip();
    let senders: [Sender<Admitted>; 4] = txs.try_into().unwrap();
    let (outcome_tx, outcome_rx) = channel(outcome_capacity);
    (Intake::new(senders, outcome_tx, when_full), rxs, outcome_rx)
}

/// An immediate outcome (an error reply) for the record at `offset` of `topic`'s partition 0.
fn outcome(topic: Tier, offset: i64) -> Outcome {
    let a = admitted(topic, topic, 0, offset);
    Outcome::error(a, crate::wire::Status::InvalidInput, "bad".into(), 0)
}

fn offsets(rx: &mut Receiver<Admitted>) -> Vec<i64> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|a| a.origin.offset)
        .collect()
}

#[test]
fn a_full_tier_stashes_in_order_and_pauses_its_topic() {
    let (mut intake, mut rxs) = intake(2);
    for off in 0..5 {
        let o = intake.offer(admitted(Tier::Low, Tier::Low, 0, off));
        assert_eq!(matches!(o, Offer::Sent), off < 2, "offset {off}");
    }
    assert!(matches!(
        intake.offer(admitted(Tier::High, Tier::High, 0, 0)),
        Offer::Sent
    ));
    assert_eq!(intake.pauses_due(), vec![Tier::Low]);
    assert!(intake.pauses_due().is_empty(), "reported once");
    assert!(intake.paused()[Tier::Low.index()]);

    assert_eq!(offsets(&mut rxs[3]), vec![0, 1]);
    assert_eq!(intake.flush(), Ok(2));
    assert!(intake.resumes_due().is_empty(), "offset 4 is still stashed");
    assert_eq!(offsets(&mut rxs[3]), vec![2, 3]);
    assert_eq!(intake.flush(), Ok(1));
    assert!(!intake.has_stash());
    assert_eq!(intake.resumes_due(), vec![Tier::Low]);
    assert_eq!(offsets(&mut rxs[3]), vec![4]);
}

#[test]
fn a_demoted_request_never_pauses_its_source_topic() {
    let (mut intake, mut rxs) = intake(2);
    // The low channel is full of low requests.
    for off in 0..2 {
        assert!(matches!(
            intake.offer(admitted(Tier::Low, Tier::Low, 0, off)),
            Offer::Sent
        ));
    }
    // Critical records asking to be served at low: they wait in the low stash, up to the
    // channel's capacity, without pausing the critical topic; one more is handed back.
    for off in 0..2 {
        assert!(matches!(
            intake.offer(admitted(Tier::Critical, Tier::Low, 0, off)),
            Offer::Stashed
        ));
    }
    match intake.offer(admitted(Tier::Critical, Tier::Low, 0, 2)) {
        Offer::Full(a) => assert_eq!(a.origin.offset, 2),
        other => panic!("expected the demoted request back, got {other:?}"),
    }
    assert!(
        intake.pauses_due().is_empty(),
        "nothing pauses the critical topic"
    );
    assert!(!intake.paused()[Tier::Critical.index()]);
    // Critical requests served at critical still flow.
    assert!(matches!(
        intake.offer(admitted(Tier::Critical, Tier::Critical, 0, 3)),
        Offer::Sent
    ));
    // A low request behind the demoted ones pauses only the low topic.
    assert!(matches!(
        intake.offer(admitted(Tier::Low, Tier::Low, 0, 2)),
        Offer::Stashed
    ));
    assert_eq!(intake.pauses_due(), vec![Tier::Low]);
    // Order within the low tier is kept as room appears.
    assert_eq!(offsets(&mut rxs[3]), vec![0, 1]);
    assert_eq!(intake.flush(), Ok(2));
    let origins: Vec<(Tier, i64)> = std::iter::from_fn(|| rxs[3].try_recv().ok())
        .map(|a| (a.origin.topic_tier, a.origin.offset))
        .collect();
    assert_eq!(origins, vec![(Tier::Critical, 0), (Tier::Critical, 1)]);
    assert_eq!(intake.flush(), Ok(1));
    assert_eq!(offsets(&mut rxs[3]), vec![2]);
    assert_eq!(intake.resumes_due(), vec![Tier::Low]);
}

#[test]
fn a_full_outcome_channel_queues_and_pauses_every_topic_without_blocking() {
    let (mut intake, _rxs, mut outcomes) = intake_with_outcomes(4, 1, QueueFull::Pause);
    assert!(matches!(
        intake.offer_outcome(outcome(Tier::High, 0)),
        OutcomeOffer::Sent
    ));
    assert!(matches!(
        intake.offer_outcome(outcome(Tier::High, 1)),
        OutcomeOffer::Queued
    ));
    assert!(matches!(
        intake.offer_outcome(outcome(Tier::Low, 0)),
        OutcomeOffer::Queued
    ));
    assert_eq!(intake.backlog(), 2);
    assert_eq!(
        intake.pauses_due(),
        Tier::ALL.to_vec(),
        "every topic feeds the replier"
    );
    assert!(intake.needs_attention());
    assert_eq!(intake.flush(), Ok(0), "no room yet");
    assert_eq!(outcomes.try_recv().unwrap().origin().offset, 0);
    assert_eq!(intake.flush(), Ok(1));
    assert!(intake.resumes_due().is_empty(), "one outcome still queued");
    assert_eq!(outcomes.try_recv().unwrap().origin().offset, 1);
    assert_eq!(intake.flush(), Ok(1));
    assert_eq!(intake.backlog(), 0);
    assert_eq!(intake.resumes_due(), Tier::ALL.to_vec());
    let last = outcomes.try_recv().unwrap().origin();
    assert_eq!((last.topic_tier, last.offset), (Tier::Low, 0), "order kept");
}

#[test]
fn revoke_and_close_hand_back_queued_outcomes() {
    let (mut intake, _rxs, _outcomes) = intake_with_outcomes(4, 1, QueueFull::Pause);
    intake.offer_outcome(outcome(Tier::High, 0));
    intake.offer_outcome(outcome(Tier::High, 1));
    intake.offer_outcome(outcome(Tier::Low, 2));
    let dropped = intake.drop_partitions(&[(Tier::High, 0)]);
    assert_eq!(
        dropped.iter().map(|o| o.offset).collect::<Vec<_>>(),
        vec![1]
    );
    let closed = intake.close();
    assert_eq!(closed.iter().map(|o| o.offset).collect::<Vec<_>>(), vec![2]);
    assert!(matches!(
        intake.offer_outcome(outcome(Tier::Low, 3)),
        OutcomeOffer::Closed(_)
    ));
}

#[test]
fn a_paused_topic_resumes_only_when_its_channel_is_half_empty() {
    let (mut intake, mut rxs) = intake(4);
    for off in 0..5 {
        intake.offer(admitted(Tier::High, Tier::High, 0, off));
    }
    assert_eq!(intake.pauses_due(), vec![Tier::High]);
    rxs[1].try_recv().unwrap();
    assert_eq!(intake.flush(), Ok(1));
    assert!(!intake.has_stash() && intake.needs_attention());
    assert!(
        intake.resumes_due().is_empty(),
        "channel full again: stay paused"
    );
    rxs[1].try_recv().unwrap();
    assert!(intake.resumes_due().is_empty(), "one slot of four free");
    rxs[1].try_recv().unwrap();
    assert_eq!(intake.resumes_due(), vec![Tier::High]);
    assert!(!intake.needs_attention());
}

#[test]
fn later_requests_queue_behind_the_stash_even_when_room_appears() {
    let (mut intake, mut rxs) = intake(1);
    intake.offer(admitted(Tier::Low, Tier::Low, 0, 0));
    intake.offer(admitted(Tier::Low, Tier::Low, 0, 1));
    assert_eq!(offsets(&mut rxs[3]), vec![0]);
    // Room now, but 1 is stashed: 2 must not overtake it.
    assert!(matches!(
        intake.offer(admitted(Tier::Low, Tier::Low, 0, 2)),
        Offer::Stashed
    ));
    intake.flush().unwrap();
    assert_eq!(offsets(&mut rxs[3]), vec![1]);
    intake.flush().unwrap();
    assert_eq!(offsets(&mut rxs[3]), vec![2]);
}

#[test]
fn revoked_partitions_lose_their_stash_and_report_origins() {
    let (mut intake, mut rxs) = intake(1);
    for (p, off) in [(0, 0), (0, 1), (1, 2), (0, 3)] {
        intake.offer(admitted(Tier::Critical, Tier::Critical, p, off));
    }
    intake.pauses_due();
    let dropped = intake.drop_partitions(&[(Tier::Critical, 0)]);
    let offs: Vec<i64> = dropped.iter().map(|o| o.offset).collect();
    assert_eq!(offs, vec![1, 3]);
    assert!(
        intake.resumes_due().is_empty(),
        "partition 1's record is still held"
    );
    assert_eq!(intake.drop_partitions(&[(Tier::Critical, 1)]).len(), 1);
    assert!(intake.resumes_due().is_empty(), "its channel is still full");
    rxs[0].try_recv().unwrap();
    assert_eq!(intake.resumes_due(), vec![Tier::Critical]);
}

#[test]
fn close_drops_senders_and_returns_the_stash() {
    let (mut intake, mut rxs) = intake(1);
    intake.offer(admitted(Tier::High, Tier::High, 0, 0));
    intake.offer(admitted(Tier::High, Tier::High, 0, 1));
    let dropped = intake.close();
    assert_eq!(dropped.len(), 1);
    assert_eq!(offsets(&mut rxs[1]), vec![0]);
    assert!(
        rxs[1].try_recv().is_err() && rxs[1].is_closed(),
        "senders dropped"
    );
    assert!(matches!(
        intake.offer(admitted(Tier::High, Tier::High, 0, 2)),
        Offer::Closed(_)
    ));
}

#[test]
fn a_closed_channel_hands_the_request_back() {
    let (mut intake, mut rxs) = intake(1);
    rxs.remove(2);
    assert!(matches!(
        intake.offer(admitted(Tier::Normal, Tier::Normal, 0, 0)),
        Offer::Closed(_)
    ));
}

#[test]
fn rejecting_mode_hands_back_instead_of_stashing_or_pausing() {
    let (mut intake, mut rxs, _outcomes) = intake_with_outcomes(2, 16, QueueFull::Reject);
    let mut full = Vec::new();
    for off in 0..5 {
        match intake.offer(admitted(Tier::Low, Tier::Low, 0, off)) {
            Offer::Sent => {}
            Offer::Full(a) => full.push(a.origin.offset),
            other => panic!("offset {off}: {other:?}"),
        }
    }
    assert_eq!(full, [2, 3, 4], "what the channel cannot take comes back");
    assert!(!intake.has_stash());
    assert!(
        intake.pauses_due().is_empty(),
        "nothing to pause: nothing waits"
    );
    assert_eq!(offsets(&mut rxs[3]), [0, 1]);
    // Room again: the next request goes in.
    assert!(matches!(
        intake.offer(admitted(Tier::Low, Tier::Low, 0, 5)),
        Offer::Sent
    ));
}
