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
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| channel(capacity)).unzip();
    let senders: [Sender<Admitted>; 4] = txs.try_into().unwrap();
    (Intake::new(senders, QueueFull::Pause), rxs)
}

fn offsets(rx: &mut Receiver<Admitted>) -> Vec<i64> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|a| a.origin.offset)
        .collect()
}

#[test]
fn a_full_tier_stashes_in_order_and_pauses_the_source_topic() {
    let (mut intake, mut rxs) = intake(2);
    for off in 0..5 {
        // Read from the normal topic, demoted to low.
        let o = intake.offer(admitted(Tier::Normal, Tier::Low, 0, off));
        assert_eq!(matches!(o, Offer::Sent), off < 2, "offset {off}");
    }
    assert!(matches!(
        intake.offer(admitted(Tier::High, Tier::High, 0, 0)),
        Offer::Sent
    ));
    assert_eq!(
        intake.pauses_due(),
        vec![Tier::Normal],
        "the source topic, not the served tier"
    );
    assert!(intake.pauses_due().is_empty(), "reported once");
    assert!(intake.is_paused(Tier::Normal));

    assert_eq!(offsets(&mut rxs[3]), vec![0, 1]);
    assert_eq!(intake.flush(), Ok(2));
    assert!(intake.resumes_due().is_empty(), "offset 4 is still stashed");
    assert_eq!(offsets(&mut rxs[3]), vec![2, 3]);
    assert_eq!(intake.flush(), Ok(1));
    assert!(!intake.has_stash());
    assert_eq!(intake.resumes_due(), vec![Tier::Normal]);
    assert_eq!(offsets(&mut rxs[3]), vec![4]);
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
    let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| channel(2)).unzip();
    let senders: [Sender<Admitted>; 4] = txs.try_into().unwrap();
    let mut intake = Intake::new(senders, QueueFull::Reject);
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
