//! Tests of the ONNX Runtime backend against the committed model and its Python reference.
//!
//! Invariant: these tests need only `vendor/onnxruntime/` (scripts/install-onnxruntime.sh) and the
//! committed files under `models/`; none depends on test order, since the library can be loaded
//! only once per process and every test goes through the same default discovery.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Device, ModelConfig};
use crate::inference::{load_backend, Backend, InferenceError, LoadSpec, OrtBackend};
use crate::model::ModelId;

const TOLERANCE: f32 = 1e-5;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Version 1 of the bundled CNN+LSTM (the one the Python reference was computed with).
fn test_config() -> LoadSpec {
    let runtime = ModelConfig {
        warmup_batches: 1,
        intra_op_threads: 1,
        ..ModelConfig::default()
    };
    let path = models_dir().join("cnn_lstm/1/model.onnx");
    LoadSpec::new(&runtime, ModelId::new("cnn_lstm", "1"), path)
}

fn backend() -> OrtBackend {
    OrtBackend::new(&test_config()).unwrap_or_else(|e| {
        panic!("cannot build backend ({e}); run scripts/install-onnxruntime.sh first")
    })
}

struct Reference {
    input: Vec<f32>,
    rows: usize,
    output: Vec<f32>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(models_dir().join("cnn_lstm.reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        json[key]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let shape: Vec<usize> = json["input"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(&shape[1..], &[64, 16]);
    Reference {
        input: floats("input"),
        rows: shape[0],
        output: floats("output"),
    }
}

fn random_rows(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows * 64 * 16)
        .map(|_| rng.random_range(-3.0..3.0))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn outputs_match_python_onnxruntime_reference() {
    let reference = reference();
    let mut backend = backend();
    let mut output = Vec::new();
    backend
        .infer(&reference.input, reference.rows, &mut output)
        .unwrap();
    let diff = max_abs_diff(&output, &reference.output);
    assert!(diff <= TOLERANCE, "max |rust - python| = {diff}");
}

#[test]
fn batch_rows_equal_single_row_runs() {
    let rows = 7;
    let input = random_rows(rows, 11);
    let mut backend = backend();
    let mut batched = Vec::new();
    backend.infer(&input, rows, &mut batched).unwrap();

    let mut single = Vec::new();
    for (i, row) in input.chunks_exact(64 * 16).enumerate() {
        backend.infer(row, 1, &mut single).unwrap();
        let diff = max_abs_diff(&single, &batched[i * 3..(i + 1) * 3]);
        assert!(diff <= TOLERANCE, "row {i}: max diff {diff}");
    }
}

#[test]
fn outputs_are_probabilities() {
    let mut backend = backend();
    let mut output = Vec::new();
    backend.infer(&random_rows(16, 3), 16, &mut output).unwrap();
    for row in output.chunks_exact(3) {
        assert!(row.iter().all(|p| (0.0..=1.0).contains(p)), "{row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
}

#[test]
fn empty_batch_is_an_error_and_the_backend_survives() {
    let mut backend = backend();
    let mut output = vec![42.0];
    assert_eq!(
        backend.infer(&[], 0, &mut output),
        Err(InferenceError::EmptyBatch)
    );
    assert_eq!(
        output,
        vec![42.0],
        "a rejected batch must not touch the output"
    );
    backend.infer(&random_rows(1, 5), 1, &mut output).unwrap();
    assert_eq!(output.len(), 3);
}

#[test]
fn wrong_input_length_is_an_error() {
    let mut backend = backend();
    let mut output = Vec::new();
    let input = random_rows(2, 9);
    assert_eq!(
        backend.infer(&input[..input.len() - 1], 2, &mut output),
        Err(InferenceError::InputLength {
            expected: 2048,
            got: 2047
        })
    );
    assert_eq!(
        backend.infer(&input, 3, &mut output),
        Err(InferenceError::InputLength {
            expected: 3072,
            got: 2048
        })
    );
}

#[test]
fn output_buffer_is_cleared_and_reused() {
    let mut backend = backend();
    let mut output = vec![-1.0; 1000];
    let capacity = output.capacity();
    backend.infer(&random_rows(4, 1), 4, &mut output).unwrap();
    assert_eq!(output.len(), 12);
    assert_eq!(output.capacity(), capacity);
}

#[test]
fn large_batch_runs() {
    let mut backend = backend();
    let mut output = Vec::new();
    backend
        .infer(&random_rows(256, 2), 256, &mut output)
        .unwrap();
    assert_eq!(output.len(), 256 * 3);
}

#[test]
fn missing_model_file_is_a_model_load_error() {
    let config = LoadSpec {
        path: models_dir().join("does_not_exist.onnx"),
        ..test_config()
    };
    match OrtBackend::new(&config).unwrap_err() {
        InferenceError::ModelLoad { path, .. } => assert!(path.ends_with("does_not_exist.onnx")),
        other => panic!("expected ModelLoad, got {other}"),
    }
}

#[test]
fn corrupt_model_file_is_a_model_load_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.onnx"), b"not a protobuf").unwrap();
    let config = LoadSpec {
        path: dir.path().join("bad.onnx"),
        ..test_config()
    };
    assert!(matches!(
        OrtBackend::new(&config),
        Err(InferenceError::ModelLoad { .. })
    ));
}

#[test]
fn the_signature_comes_from_the_file_not_from_constants() {
    let config = LoadSpec {
        id: ModelId::new("risk_mlp", "1"),
        path: models_dir().join("risk_mlp/1/model.onnx"),
        ..test_config()
    };
    let mut backend = OrtBackend::new(&config).unwrap();
    let sig = backend.info().signature();
    assert_eq!(
        (sig.input_name.as_str(), sig.input_shape.as_slice()),
        ("features", &[8][..])
    );
    assert_eq!((sig.output_name.as_str(), sig.output_size), ("risk", 2));
    let mut out = Vec::new();
    backend.infer(&[0.5; 24], 3, &mut out).unwrap();
    assert_eq!(out.len(), 6);
    // Softmax rows.
    for row in out.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
    }
}

#[test]
fn warm_up_samples_must_be_whole_rows() {
    let config = LoadSpec {
        warmup_rows: vec![0.0; 1024 + 1],
        ..test_config()
    };
    assert!(matches!(
        OrtBackend::new(&config),
        Err(InferenceError::ModelMismatch(m)) if m.contains("whole rows")
    ));
    let config = LoadSpec {
        warmup_batches: 3,
        warmup_rows: vec![0.25; 2 * 1024],
        ..test_config()
    };
    assert!(OrtBackend::new(&config).is_ok());
}

#[test]
fn bad_configured_library_path_is_a_typed_error() {
    let missing = PathBuf::from("/nonexistent/kbatch/libonnxruntime.so");
    let config = LoadSpec {
        ort_library_path: Some(missing.clone()),
        ..test_config()
    };
    assert_eq!(
        OrtBackend::new(&config).unwrap_err(),
        InferenceError::LibraryNotFound {
            searched: vec![missing]
        }
    );
}

#[test]
fn cuda_request_degrades_to_cpu_when_unavailable() {
    let reference = reference();
    let config = LoadSpec {
        device: Device::Cuda,
        ..test_config()
    };
    let mut backend = load_backend(&config).unwrap();
    // Without the feature CUDA can never be used; with it, the vendored CPU-only library refuses it.
    #[cfg(not(feature = "cuda"))]
    assert_eq!(backend.info().device, Device::Cpu);
    let mut output = Vec::new();
    backend
        .infer(&reference.input, reference.rows, &mut output)
        .unwrap();
    assert!(max_abs_diff(&output, &reference.output) <= TOLERANCE);
}

#[test]
fn info_reports_discovered_names_and_library() {
    let backend = backend();
    let info = backend.info();
    assert_eq!(
        (info.input_name.as_str(), info.output_name.as_str()),
        ("input", "output")
    );
    assert_eq!(
        (info.input_shape.as_slice(), info.output_size),
        (&[64, 16][..], 3)
    );
    assert!(info
        .library_path
        .to_string_lossy()
        .contains("libonnxruntime.so"));
}

#[test]
fn backend_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<OrtBackend>();
    assert_send::<Box<dyn Backend>>();
}
