//! Unit tests of `info`.

use std::path::PathBuf;

use super::*;
use crate::config::Device;

fn info() -> ModelInfo {
    ModelInfo {
        id: ModelId::new("m", "1"),
        input_name: "input".into(),
        output_name: "output".into(),
        input_shape: vec![4, 2],
        output_size: 3,
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

#[test]
fn check_input_rejects_empty_batches_and_partial_rows() {
    let info = info();
    assert_eq!(info.check_input(&[], 0), Err(InferenceError::EmptyBatch));
    assert_eq!(
        info.check_input(&[0.0; 9], 1),
        Err(InferenceError::InputLength {
            expected: 8,
            got: 9
        })
    );
    assert_eq!(info.check_input(&[0.0; 16], 2), Ok(()));
}
