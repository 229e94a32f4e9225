//! Unit tests of `info`.

use std::path::PathBuf;

use super::*;
use crate::config::Device;
use crate::tensor::{Dim, TensorData};

fn info(signature: Signature) -> ModelInfo {
    ModelInfo {
        id: ModelId::new("m", "1"),
        signature,
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

fn batch(row_shape: &[usize], data: TensorData) -> BatchTensor {
    BatchTensor {
        row_shape: row_shape.to_vec(),
        data,
    }
}

#[test]
fn check_input_rejects_empty_batches_and_partial_rows() {
    let info = info(Signature::float32("input", &[4, 2], "output", 3));
    assert_eq!(info.check_input(&[], 0), Err(InferenceError::EmptyBatch));
    assert_eq!(
        info.check_input(&[batch(&[4, 2], TensorData::F32(vec![0.0; 9]))], 1),
        Err(InferenceError::InputLength {
            input: "input".into(),
            expected: 8,
            got: 9
        })
    );
    assert_eq!(
        info.check_input(&[batch(&[4, 2], TensorData::F32(vec![0.0; 16]))], 2),
        Ok(())
    );
}

#[test]
fn check_input_wants_every_input_in_its_type_and_an_accepted_shape() {
    let sig = Signature {
        inputs: vec![
            TensorSpec::fixed("ids", DType::Int64, &[1]),
            TensorSpec::new("seq", DType::Float32, vec![Dim::Dynamic, Dim::Fixed(2)]),
        ],
        outputs: vec![TensorSpec::fixed("y", DType::Float32, &[1])],
    };
    assert!(sig.has_dynamic_inputs());
    assert!(!sig.serves_version_1());
    let info = info(sig);
    let ids = batch(&[1], TensorData::I64(vec![1, 2]));
    let seq = batch(&[3, 2], TensorData::F32(vec![0.0; 12]));
    assert_eq!(info.check_input(&[ids.clone(), seq.clone()], 2), Ok(()));
    assert!(matches!(
        info.check_input(std::slice::from_ref(&ids), 2),
        Err(InferenceError::ModelMismatch(_))
    ));
    let floats = batch(&[1], TensorData::F32(vec![1.0, 2.0]));
    let err = info.check_input(&[floats, seq.clone()], 2).unwrap_err();
    assert!(
        err.to_string().contains("float32 values for a int64 input"),
        "{err}"
    );
    let wide = batch(&[3, 3], TensorData::F32(vec![0.0; 18]));
    assert!(info.check_input(&[ids, wide], 2).is_err());
}

#[test]
fn signatures_print_every_input_and_output() {
    let sig = Signature::float32("input", &[64, 16], "output", 3);
    assert!(sig.serves_version_1());
    assert_eq!(
        sig.to_string(),
        "input: float32[batch, 64, 16] -> output: float32[batch, 3]"
    );
}
