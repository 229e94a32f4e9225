//! Unit tests of the client guard: allow-lists, token-bucket refill and burst, and the bound on
//! tracked clients.

use std::time::Duration;

use super::*;
use crate::config::TierAccess;

fn limited(tier: Tier, rate_per_second: f64, burst: u32) -> SecurityConfig {
    let mut s = SecurityConfig::default();
    set(&mut s, tier).rate_limit = Some(RateLimit {
        rate_per_second,
        burst,
    });
    s
}

fn set(s: &mut SecurityConfig, tier: Tier) -> &mut TierAccess {
    let t = &mut s.tier_access;
    match tier {
        Tier::Critical => &mut t.critical,
        Tier::High => &mut t.high,
        Tier::Normal => &mut t.normal,
        Tier::Low => &mut t.low,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// How many of `n` requests from `client` at `now` pass.
fn passed(g: &mut ClientGuard, client: &str, tier: Tier, n: usize, now: Instant) -> usize {
    (0..n)
        .filter(|_| g.check(Some(client), tier, now).is_ok())
        .count()
}

#[test]
fn without_rules_everyone_passes_and_nothing_is_tracked() {
    let mut g = ClientGuard::new(&SecurityConfig::default());
    let now = Instant::now();
    for tier in Tier::ALL {
        assert_eq!(g.check(Some("anyone"), tier, now), Ok(()));
        assert_eq!(g.check(None, tier, now), Ok(()));
    }
    assert_eq!(g.tracked(), 0);
}

#[test]
fn an_allow_list_admits_only_its_clients_and_not_anonymous_requests() {
    let mut s = SecurityConfig::default();
    set(&mut s, Tier::Critical).allowed_clients = Some(vec!["trusted".into()]);
    let mut g = ClientGuard::new(&s);
    let now = Instant::now();
    assert_eq!(g.check(Some("trusted"), Tier::Critical, now), Ok(()));
    let err = g
        .check(Some("intruder"), Tier::Critical, now)
        .expect_err("not listed");
    assert!(
        err.contains("\"intruder\" is not allowed on tier critical"),
        "{err}"
    );
    assert!(
        err.contains("security.tier_access.critical.allowed_clients"),
        "{err}"
    );
    let err = g
        .check(None, Tier::Critical, now)
        .expect_err("no client id");
    assert!(err.contains("no client_id"), "{err}");
    // Other tiers have no list.
    assert_eq!(g.check(Some("intruder"), Tier::Low, now), Ok(()));
    assert_eq!(g.check(None, Tier::High, now), Ok(()));
}

#[test]
fn an_empty_allow_list_closes_the_tier() {
    let mut s = SecurityConfig::default();
    set(&mut s, Tier::High).allowed_clients = Some(vec![]);
    let mut g = ClientGuard::new(&s);
    assert!(g.check(Some("a"), Tier::High, Instant::now()).is_err());
}

#[test]
fn a_burst_passes_at_once_and_the_rest_is_refused_with_a_clear_message() {
    let mut g = ClientGuard::new(&limited(Tier::Low, 5.0, 5));
    let now = Instant::now();
    assert_eq!(passed(&mut g, "bulk", Tier::Low, 5, now), 5);
    let err = g.check(Some("bulk"), Tier::Low, now).expect_err("over");
    assert!(
        err.starts_with("rate limit exceeded for client \"bulk\" on tier low"),
        "{err}"
    );
    assert!(err.contains("5 per second, burst 5"), "{err}");
    // Unlimited tiers stay unlimited for the same client.
    assert_eq!(passed(&mut g, "bulk", Tier::Normal, 100, now), 100);
}

#[test]
fn tokens_refill_at_the_rate_and_never_past_the_burst() {
    let mut g = ClientGuard::new(&limited(Tier::High, 2.0, 3));
    let t0 = Instant::now();
    assert_eq!(passed(&mut g, "c", Tier::High, 10, t0), 3);
    // 0.4 s at 2/s is 0.8 of a token: still none.
    assert_eq!(passed(&mut g, "c", Tier::High, 1, t0 + secs(0.4)), 0);
    // 0.5 s in total is one token.
    assert_eq!(passed(&mut g, "c", Tier::High, 10, t0 + secs(0.5)), 1);
    // 1.5 s later: three tokens, capped at the burst of three (not 1.5 * 2 + leftovers).
    assert_eq!(passed(&mut g, "c", Tier::High, 10, t0 + secs(2.0)), 3);
    // An hour idle still gives only the burst.
    assert_eq!(passed(&mut g, "c", Tier::High, 10, t0 + secs(3600.0)), 3);
}

#[test]
fn fractional_tokens_carry_over() {
    let mut g = ClientGuard::new(&limited(Tier::Low, 4.0, 1));
    let t0 = Instant::now();
    assert_eq!(passed(&mut g, "c", Tier::Low, 1, t0), 1);
    // Refused checks do not spend the fraction gathered so far.
    assert_eq!(passed(&mut g, "c", Tier::Low, 1, t0 + secs(0.125)), 0);
    assert_eq!(passed(&mut g, "c", Tier::Low, 1, t0 + secs(0.25)), 1);
}

#[test]
fn a_clock_going_backwards_refills_nothing() {
    let mut g = ClientGuard::new(&limited(Tier::Low, 1.0, 1));
    let t0 = Instant::now() + secs(10.0);
    assert_eq!(passed(&mut g, "c", Tier::Low, 1, t0), 1);
    assert_eq!(passed(&mut g, "c", Tier::Low, 1, t0 - secs(5.0)), 0);
    assert_eq!(passed(&mut g, "c", Tier::Low, 1, t0 + secs(1.0)), 1);
}

#[test]
fn clients_have_their_own_buckets_and_unknown_clients_start_full() {
    let mut g = ClientGuard::new(&limited(Tier::Normal, 0.01, 2));
    let now = Instant::now();
    assert_eq!(passed(&mut g, "a", Tier::Normal, 5, now), 2);
    assert_eq!(passed(&mut g, "b", Tier::Normal, 5, now), 2);
    assert_eq!(passed(&mut g, "never-seen", Tier::Normal, 1, now), 1);
    assert_eq!(g.tracked(), 3);
}

#[test]
fn requests_without_a_client_id_share_one_bucket() {
    let mut g = ClientGuard::new(&limited(Tier::Low, 0.01, 3));
    let now = Instant::now();
    let ok = (0..10)
        .filter(|_| g.check(None, Tier::Low, now).is_ok())
        .count();
    assert_eq!(ok, 3);
    let err = g.check(None, Tier::Low, now).expect_err("over");
    assert!(
        err.contains("requests without a client_id on tier low"),
        "{err}"
    );
    assert_eq!(
        g.tracked(),
        0,
        "the anonymous bucket is not a tracked client"
    );
}

#[test]
fn allow_list_and_rate_limit_apply_together() {
    let mut s = limited(Tier::Critical, 0.01, 1);
    set(&mut s, Tier::Critical).allowed_clients = Some(vec!["trusted".into()]);
    let mut g = ClientGuard::new(&s);
    let now = Instant::now();
    // A refused client spends no token and takes no bucket.
    assert!(g.check(Some("intruder"), Tier::Critical, now).is_err());
    assert_eq!(g.tracked(), 0);
    assert_eq!(passed(&mut g, "trusted", Tier::Critical, 3, now), 1);
}

#[test]
fn tracked_clients_stay_bounded_and_idle_buckets_go_first() {
    let mut s = limited(Tier::Low, 1.0, 2);
    s.max_tracked_clients = 32;
    let mut g = ClientGuard::new(&s);
    let t0 = Instant::now();
    // "busy" empties its bucket; 31 others take one token each and go quiet.
    assert_eq!(passed(&mut g, "busy", Tier::Low, 2, t0), 2);
    let t1 = t0 + secs(0.5);
    for i in 0..31 {
        assert_eq!(passed(&mut g, &format!("idle-{i}"), Tier::Low, 1, t0), 1);
    }
    assert_eq!(g.tracked(), 32);
    // At t1 the idle ones are half refilled (loss 0.5 each) and busy at 0.5 tokens (loss 1.5).
    // A new client evicts two (a sixteenth of 32) of the idle ones, not busy.
    assert_eq!(passed(&mut g, "new", Tier::Low, 1, t1), 1);
    assert_eq!(g.tracked(), 31);
    // Busy still has its nearly empty bucket: forgetting it would have handed it a new burst.
    assert_eq!(passed(&mut g, "busy", Tier::Low, 1, t1), 0);
    // Many new clients: never more than the cap.
    for i in 0..1000 {
        g.check(Some(&format!("flood-{i}")), Tier::Low, t1).ok();
        assert!(g.tracked() <= 32);
    }
}

#[test]
fn a_cap_of_one_keeps_one_client() {
    let mut s = limited(Tier::Low, 1.0, 1);
    s.max_tracked_clients = 1;
    let mut g = ClientGuard::new(&s);
    let now = Instant::now();
    assert_eq!(passed(&mut g, "a", Tier::Low, 1, now), 1);
    assert_eq!(passed(&mut g, "b", Tier::Low, 1, now), 1);
    assert_eq!(g.tracked(), 1);
}

#[test]
fn buckets_count_towards_the_cap_across_tiers() {
    let mut s = limited(Tier::Low, 1.0, 1);
    set(&mut s, Tier::High).rate_limit = Some(RateLimit {
        rate_per_second: 1.0,
        burst: 1,
    });
    s.max_tracked_clients = 16;
    let mut g = ClientGuard::new(&s);
    let now = Instant::now();
    for i in 0..40 {
        let tier = if i % 2 == 0 { Tier::Low } else { Tier::High };
        g.check(Some(&format!("c-{i}")), tier, now).ok();
        assert!(g.tracked() <= 16);
    }
}
