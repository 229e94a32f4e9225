//! Unit tests of `pacing`.

use super::*;

#[test]
fn the_schedule_is_absolute() {
    let p = Pacer::new(1000.0, 10_000);
    assert_eq!(p.due_by(Duration::ZERO), 1);
    assert_eq!(p.due_by(Duration::from_micros(999)), 1);
    assert_eq!(p.due_by(Duration::from_millis(1)), 2);
    assert_eq!(p.due_by(Duration::from_millis(250)), 251);
    // Falling behind means a catch-up burst, not a shifted schedule.
    assert_eq!(p.due_by(Duration::from_secs(3)), 3001);
    assert_eq!(p.due_by(Duration::from_secs(60)), 10_000);
    assert_eq!(p.due_at(0), Duration::ZERO);
    assert_eq!(p.due_at(500), Duration::from_millis(500));
    assert_eq!(p.span(), Duration::from_millis(9999));
}

#[test]
fn due_by_and_due_at_agree_at_every_send() {
    for rate in [3.0, 7.0, 333.0, 12_345.0] {
        let p = Pacer::new(rate, 1000);
        for i in 0..1000 {
            assert!(
                p.due_by(p.due_at(i)) > i,
                "rate {rate}: send {i} not due at its time"
            );
        }
    }
}

#[test]
fn unpaced_sends_everything_at_once() {
    for rate in [0.0, -1.0, f64::NAN] {
        let p = Pacer::new(rate, 500);
        assert!(!p.is_paced());
        assert_eq!(p.due_by(Duration::ZERO), 500);
        assert_eq!(p.due_at(499), Duration::ZERO);
    }
    assert_eq!(Pacer::new(100.0, 0).due_by(Duration::from_secs(1)), 0);
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
    assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("3 days").is_err());
    assert!(parse_duration("").is_err());
}
