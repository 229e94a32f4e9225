//! Unit tests of `producer`.

use super::*;

#[test]
fn send_log_keeps_instants_and_failures() {
    let base = Instant::now();
    let log = SendLog::new(4, base);
    assert_eq!(log.sent_at(0), None);
    log.mark_sent(0, base);
    log.mark_sent(1, base + Duration::from_micros(1500));
    log.mark_sent(2, base + Duration::from_millis(3));
    log.mark_failed(2);
    assert_eq!(log.sent_at(0), Some(base));
    assert_eq!(log.sent_at(1), Some(base + Duration::from_micros(1500)));
    assert!(!log.sent_ok(2));
    assert!(!log.sent_ok(3));
    // Out of range is "never sent", not a panic.
    assert_eq!(log.sent_at(99), None);
    log.mark_sent(99, base);
    log.clear(1);
    assert!(!log.sent_ok(1));
}
