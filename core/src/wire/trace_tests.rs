//! Unit tests of `trace`.

use super::*;

const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_header_is_joined_with_a_new_span() {
    let a = TraceContext::join(Some(VALID)).expect("valid");
    assert_eq!(a.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&a.parent_id), "00f067aa0ba902b7");
    assert_eq!(a.flags, 1);
    let reply = a.reply_header();
    assert!(
        reply.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{reply}"
    );
    assert!(reply.ends_with("-01"));
    assert!(
        !reply.contains("00f067aa0ba902b7"),
        "kbatch's span replaces the caller's"
    );
    let b = TraceContext::join(Some(VALID)).expect("valid");
    assert_ne!(a.span_id, b.span_id, "each request gets its own span");
}

#[test]
fn invalid_headers_are_ignored() {
    for bad in [
        &b"00-abc-def-01"[..],
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        b"\xff\xfe",
        b"",
    ] {
        assert_eq!(
            TraceContext::join(Some(bad)),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(TraceContext::join(None), None);
}
