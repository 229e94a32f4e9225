//! Unit tests of the tensor types.

use super::*;

#[test]
fn json_keeps_every_bit_of_int64_values() {
    // 2^53 + 1 is the first integer a double cannot hold.
    let text = r#"{"name": "ids", "dtype": "INT64", "shape": [2], "data": [9007199254740993, -3]}"#;
    let t: Tensor = serde_json::from_str(text).unwrap();
    assert_eq!(t.data, TensorData::I64(vec![9_007_199_254_740_993, -3]));
    let back: Tensor = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn json_integers_refuse_fractions_and_out_of_range_values() {
    let parse = |dtype: &str, data: &str| {
        serde_json::from_str::<Tensor>(&format!(
            r#"{{"name": "x", "dtype": "{dtype}", "shape": [1], "data": [{data}]}}"#
        ))
        .map_err(|e| e.to_string())
    };
    let err = parse("INT64", "1.5").unwrap_err();
    assert!(err.contains("value 0 (1.5) is not a int64"), "{err}");
    let err = parse("INT32", "3000000000").unwrap_err();
    assert!(err.contains("is not an int32"), "{err}");
    assert_eq!(
        parse("FLOAT64", "2").unwrap().data,
        TensorData::F64(vec![2.0])
    );
    assert_eq!(parse("float32", "0.5").unwrap().dtype(), DType::Float32);
}

#[test]
fn little_endian_bytes_round_trip_for_every_type() {
    let all = [
        TensorData::F32(vec![1.5, -0.0, f32::MAX]),
        TensorData::F64(vec![1e300, -2.25]),
        TensorData::I32(vec![i32::MIN, 7]),
        TensorData::I64(vec![i64::MAX, -1]),
    ];
    for data in all {
        let mut bytes = Vec::new();
        data.write_le_bytes(&mut bytes);
        assert_eq!(bytes.len(), data.byte_len());
        assert_eq!(TensorData::from_le_bytes(data.dtype(), &bytes), data);
    }
    // Little-endian whatever the host: 1i32 starts with its low byte.
    let mut bytes = Vec::new();
    TensorData::I32(vec![1]).write_le_bytes(&mut bytes);
    assert_eq!(bytes, [1, 0, 0, 0]);
}

#[test]
fn chunked_bytes_equal_the_whole_encoding() {
    let data = TensorData::I64((0..3000).collect());
    let mut whole = Vec::new();
    data.write_le_bytes(&mut whole);
    let mut chunked = Vec::new();
    let mut pieces = 0;
    data.for_each_le_chunk(|b| {
        pieces += 1;
        assert!(b.len() <= 4096);
        chunked.extend_from_slice(b);
    });
    assert_eq!(chunked, whole);
    assert_eq!(pieces, 6, "24,000 bytes in 4 KiB pieces");
}

#[test]
fn non_finite_values_are_found_in_floats_only() {
    assert_eq!(
        TensorData::F32(vec![1.0, f32::NAN])
            .first_non_finite()
            .map(|(i, _)| i),
        Some(1)
    );
    assert_eq!(
        TensorData::F64(vec![f64::NEG_INFINITY]).first_non_finite(),
        Some((0, f64::NEG_INFINITY))
    );
    assert_eq!(TensorData::I64(vec![i64::MAX]).first_non_finite(), None);
    assert_eq!(TensorData::F32(vec![0.0; 9]).first_non_finite(), None);
}

#[test]
fn buffers_are_reused_for_the_same_type_and_extended_only_by_it() {
    let mut buf = TensorData::F32(Vec::with_capacity(64));
    buf.clear_as(DType::Float32);
    let TensorData::F32(v) = &buf else { panic!() };
    assert!(v.capacity() >= 64);
    assert!(buf.extend_from(&TensorData::F32(vec![1.0, 2.0])));
    assert!(!buf.extend_from(&TensorData::I64(vec![1])));
    assert_eq!(buf.len(), 2);
    buf.clear_as(DType::Int64);
    assert_eq!(buf, TensorData::I64(Vec::new()));
    assert_eq!(
        TensorData::I32(vec![1, 2, 3]).slice(1..3),
        Some(TensorData::I32(vec![2, 3]))
    );
    assert_eq!(TensorData::I32(vec![1]).slice(0..2), None);
}

#[test]
fn dims_read_minus_one_as_dynamic_and_refuse_zero() {
    let spec: TensorSpec =
        serde_yaml::from_str("{name: history, dtype: float32, shape: [-1, 4]}").unwrap();
    assert_eq!(spec.shape, vec![Dim::Dynamic, Dim::Fixed(4)]);
    assert!(spec.is_dynamic());
    assert_eq!(spec.fixed_len(), None);
    assert_eq!(spec.to_string(), "history: float32[batch, ?, 4]");
    assert!(spec.accepts(&[7, 4]));
    assert!(!spec.accepts(&[7, 5]));
    assert!(!spec.accepts(&[4]));
    let err = serde_yaml::from_str::<TensorSpec>("{name: x, dtype: int64, shape: [0]}");
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("expected a positive size or -1"));
    assert_eq!(
        TensorSpec::fixed("x", DType::Int64, &[2, 3]).fixed_len(),
        Some(6)
    );
}
