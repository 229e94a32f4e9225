//! Unit tests of `avro`.

use super::*;

fn roundtrip_long(v: i64) -> i64 {
    let mut buf = Vec::new();
    Writer { out: &mut buf }.long(v);
    let mut r = Reader::new(&buf);
    let got = r.long("v").unwrap();
    r.finish().unwrap();
    got
}

#[test]
fn zigzag_varints_round_trip_at_the_edges() {
    for v in [
        0,
        1,
        -1,
        63,
        -64,
        64,
        300,
        i32::MAX as i64,
        i64::MAX,
        i64::MIN,
    ] {
        assert_eq!(roundtrip_long(v), v);
    }
}

#[test]
fn known_avro_encodings() {
    // From the Avro spec: 0 -> 00, -1 -> 01, 1 -> 02, -64 -> 7f, 64 -> 80 01.
    for (v, bytes) in [
        (0, vec![0u8]),
        (-1, vec![1]),
        (1, vec![2]),
        (-64, vec![0x7f]),
        (64, vec![0x80, 1]),
    ] {
        let mut buf = Vec::new();
        Writer { out: &mut buf }.long(v);
        assert_eq!(buf, bytes, "encoding of {v}");
    }
}

#[test]
fn overlong_varint_is_rejected() {
    let buf = [0xffu8; 11];
    assert!(matches!(
        Reader::new(&buf).long("x"),
        Err(WireError::Malformed { .. })
    ));
}

#[test]
fn array_count_larger_than_input_is_truncation_not_allocation() {
    let mut buf = Vec::new();
    Writer { out: &mut buf }.long(1 << 40);
    let mut out = Vec::new();
    let err = Reader::new(&buf)
        .float_array_into("data", usize::MAX, &mut out)
        .unwrap_err();
    assert!(
        matches!(err, WireError::Truncated { field: "data" }),
        "{err:?}"
    );
    assert_eq!(out.capacity(), 0);
}

#[test]
fn negative_block_counts_carry_a_size_and_are_read() {
    let mut buf = Vec::new();
    let mut w = Writer { out: &mut buf };
    w.long(-2);
    w.long(8);
    w.out.extend_from_slice(&1.5f32.to_le_bytes());
    w.out.extend_from_slice(&(-2.0f32).to_le_bytes());
    w.long(1);
    w.out.extend_from_slice(&3.0f32.to_le_bytes());
    w.long(0);
    let mut out = Vec::new();
    let n = Reader::new(&buf)
        .float_array_into("data", 10, &mut out)
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(out, vec![1.5, -2.0, 3.0]);
}

#[test]
fn array_over_limit_is_too_large() {
    let mut buf = Vec::new();
    Writer { out: &mut buf }.float_array(&[0.0; 5]);
    let err = Reader::new(&buf)
        .float_array_into("data", 4, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooLarge {
                size: 5,
                limit: 4,
                ..
            }
        ),
        "{err:?}"
    );
}
