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
