//! Unit tests of `shared`.

use super::*;

#[test]
fn a_blocking_waiter_wakes_when_its_partition_drains() {
    let t = SharedTracker::new();
    let e = t.assign(Tier::High, 0);
    t.track(Tier::High, 0, 4);
    let other = t.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let o = Origin {
            topic_tier: Tier::High,
            partition: 0,
            offset: 4,
            epoch: e,
        };
        assert!(other.done(&o));
    });
    assert!(t.wait_until_drained(&[(Tier::High, 0)], Duration::from_secs(5)));
    h.join().unwrap();
    assert_eq!(t.total_pending(), 0);
}

#[test]
fn a_blocking_wait_is_bounded() {
    let t = SharedTracker::new();
    t.assign(Tier::Low, 1);
    t.track(Tier::Low, 1, 0);
    let start = Instant::now();
    assert!(!t.wait_until_drained(&[(Tier::Low, 1)], Duration::from_millis(30)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(
        t.wait_until_drained(&[(Tier::High, 1)], Duration::ZERO),
        "unassigned = drained"
    );
}

#[tokio::test]
async fn an_async_waiter_wakes_when_everything_is_done() {
    let t = SharedTracker::new();
    let e = t.assign(Tier::Normal, 3);
    t.track(Tier::Normal, 3, 0);
    t.track(Tier::Normal, 3, 1);
    assert!(!t.wait_all_done(Duration::from_millis(10)).await);
    let other = t.clone();
    tokio::spawn(async move {
        for offset in [1, 0] {
            tokio::time::sleep(Duration::from_millis(10)).await;
            other.done(&Origin {
                topic_tier: Tier::Normal,
                partition: 3,
                offset,
                epoch: e,
            });
        }
    });
    assert!(t.wait_all_done(Duration::from_secs(5)).await);
}

fn at(tier: Tier, partition: i32, offset: i64, epoch: u64) -> Origin {
    Origin {
        topic_tier: tier,
        partition,
        offset,
        epoch,
    }
}

#[test]
fn the_commit_gate_refuses_outcomes_of_a_revoked_assignment() {
    let t = SharedTracker::new();
    let e = t.assign(Tier::High, 0);
    t.track(Tier::High, 0, 7);
    t.revoke(Tier::High, 0);
    let stale = t.begin_commit(&[at(Tier::High, 0, 7, e)]).unwrap_err();
    assert_eq!(stale, vec![at(Tier::High, 0, 7, e)]);
    assert!(
        t.wait_commit_finished(Duration::ZERO),
        "a refused transaction leaves the gate open"
    );
}

#[test]
fn a_revoke_waits_for_a_transaction_past_the_gate() {
    let t = SharedTracker::new();
    let e = t.assign(Tier::Low, 2);
    t.track(Tier::Low, 2, 0);
    let offsets = t.begin_commit(&[at(Tier::Low, 2, 0, e)]).unwrap();
    assert_eq!(
        offsets,
        vec![(Tier::Low, 2, 1)],
        "what the transaction commits"
    );
    assert!(!t.wait_commit_finished(Duration::from_millis(20)), "closed");
    let committer = t.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        committer.end_commit();
    });
    let start = Instant::now();
    assert!(t.wait_commit_finished(Duration::from_secs(5)));
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "waited for the commit"
    );
    h.join().unwrap();
}
