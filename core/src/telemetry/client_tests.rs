//! Unit tests of `client`.

use super::*;

#[test]
fn plain_and_chunked_bodies_parse() {
    let plain = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno\n";
    assert_eq!(parse(plain).unwrap(), (503, "no\n".into()));
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(parse(chunked).unwrap(), (200, "abcde".into()));
    assert!(parse(b"garbage").is_err());
}

#[test]
fn the_summary_reads_the_served_document() {
    let stats = crate::telemetry::Stats::new();
    let d = crate::telemetry::Delivered {
        tier: crate::tier::Tier::High,
        status: Some(crate::wire::Status::Ok),
        timings: crate::wire::Timings {
            queue_wait_us: 1000,
            batch_size: 4,
            inference_us: 2000,
            end_to_end_us: 5000,
        },
        reply_us: 1000,
        fallback: false,
    };
    stats.delivered(&d);
    stats.batch(4);
    let v = serde_json::to_value(stats.snapshot()).expect("json");
    let text = summary(&v);
    assert!(
        text.starts_with("requests 1 (ok 1, dead letters 0)"),
        "{text}"
    );
    assert!(text.contains("average size 4.00"), "{text}");
    assert!(text.contains("inference 2.00"), "{text}");
    assert!(text.contains("high 1 (100.0 %)"), "{text}");
}
