//! Unit tests of `warmup`.

use super::*;
use crate::tensor::{DType, Dim};

fn signature(inputs: Vec<TensorSpec>) -> Signature {
    Signature {
        inputs,
        outputs: vec![TensorSpec::fixed("y", DType::Float32, &[2])],
    }
}

#[test]
fn a_flat_list_fills_a_fixed_shape_and_nesting_gives_the_shape() {
    let sig = signature(vec![TensorSpec::fixed("x", DType::Float32, &[2, 2])]);
    let samples = parse_samples("[[1, 2, 3, 4], [[5, 6], [7, 8.5]]]").unwrap();
    let flat = samples[0].tensors(&sig).unwrap();
    assert_eq!(flat[0].shape, vec![2, 2]);
    let nested = samples[1].tensors(&sig).unwrap();
    assert_eq!(nested[0].shape, vec![2, 2]);
    assert_eq!(nested[0].data, TensorData::F32(vec![5.0, 6.0, 7.0, 8.5]));
}

#[test]
fn named_samples_come_out_in_the_models_order_and_types() {
    let sig = signature(vec![
        TensorSpec::fixed("features", DType::Float32, &[2]),
        TensorSpec::fixed("merchant", DType::Int64, &[1]),
        TensorSpec::new("history", DType::Float32, vec![Dim::Dynamic, Dim::Fixed(2)]),
    ]);
    let text = r#"[{"history": [[1, 2], [3, 4], [5, 6]], "merchant": [42], "features": [0.5, 1]}]"#;
    let t = parse_samples(text).unwrap()[0].tensors(&sig).unwrap();
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["features", "merchant", "history"]);
    assert_eq!(t[1].data, TensorData::I64(vec![42]));
    assert_eq!(t[2].shape, vec![3, 2]);
}

#[test]
fn samples_that_do_not_fit_say_why() {
    let sig = signature(vec![
        TensorSpec::fixed("a", DType::Int64, &[2]),
        TensorSpec::fixed("b", DType::Float32, &[1]),
    ]);
    let err = |text: &str| parse_samples(text).unwrap()[0].tensors(&sig).unwrap_err();
    assert!(err("[[1, 2]]").contains("2 inputs"), "{}", err("[[1, 2]]"));
    assert!(err(r#"[{"a": [1, 2]}]"#).contains("no values for b"));
    assert!(err(r#"[{"a": [1, 2], "b": [1], "c": [1]}]"#).contains("no input named \"c\""));
    assert!(err(r#"[{"a": [1.5, 2], "b": [1]}]"#).contains("not a int64"));
    assert!(err(r#"[{"a": [1, 2, 3], "b": [1]}]"#).contains("does not fit"));
    assert!(err(r#"[{"a": [[1], [2, 3]], "b": [1]}]"#).contains("ragged"));
    assert!(parse_samples("{}").is_err());
    assert!(parse_samples(r#"["x"]"#).is_err());
}

#[test]
fn zeros_give_dynamic_dimensions_size_one() {
    let sig = signature(vec![TensorSpec::new(
        "h",
        DType::Int32,
        vec![Dim::Dynamic, Dim::Fixed(3)],
    )]);
    let z = zeros(&sig);
    assert_eq!(z[0].shape, vec![1, 3]);
    assert_eq!(z[0].data, TensorData::I32(vec![0; 3]));
}
