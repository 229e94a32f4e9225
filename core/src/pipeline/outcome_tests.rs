use super::*;
use crate::pipeline::fixtures;
use crate::tensor::{Tensor, TensorData};

#[test]
fn end_to_end_time_saturates_on_any_producer_timestamp() {
    let now = 1_790_000_000_000;
    assert_eq!(end_to_end_us(now, now - 5), 5_000);
    // A timestamp in the future (clock skew) is zero, not negative.
    assert_eq!(end_to_end_us(now, i64::MAX), 0);
    assert_eq!(end_to_end_us(now, now + 1), 0);
    // The difference itself would overflow.
    assert_eq!(end_to_end_us(now, i64::MIN), i64::MAX);
    // The difference fits but its scaling to microseconds would not.
    assert_eq!(end_to_end_us(now, now - i64::MAX / 1000 - 1), i64::MAX);
    assert_eq!(end_to_end_us(i64::MIN, i64::MAX), 0);
}

#[test]
fn replies_to_requests_with_extreme_timestamps_build_without_overflow() {
    for ts in [i64::MIN, i64::MIN + 1, -9_300_000_000_000_000, 0, i64::MAX] {
        let mut a = fixtures::admitted("r", (Tier::Low, 0, 1), Tier::Low, Instant::now());
        a.record_timestamp_ms = ts;
        let output = Tensor::new("y", vec![1], TensorData::F32(vec![1.0]));
        let Outcome::Reply { reply, .. } =
            Outcome::ok(a, vec![output], Timings::default(), now_ms())
        else {
            panic!("an OK outcome is a reply");
        };
        assert!(reply.timings.end_to_end_us >= 0, "timestamp {ts}");
        let mut a = fixtures::admitted("r", (Tier::Low, 0, 1), Tier::Low, Instant::now());
        a.record_timestamp_ms = ts;
        let Outcome::Reply { reply, .. } =
            Outcome::error(a, Status::Rejected, "no".into(), now_ms())
        else {
            panic!("an error outcome is a reply");
        };
        assert!(reply.timings.end_to_end_us >= 0, "timestamp {ts}");
    }
}
