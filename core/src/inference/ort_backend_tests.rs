//! Tests of the ONNX Runtime backend against the committed model and its Python reference.
//!
//! Invariant: these tests need only `vendor/onnxruntime/` (scripts/install-onnxruntime.sh) and the
//! committed files under `models/`; none depends on test order, since the library can be loaded
//! only once per process and every test goes through the same default discovery.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{cache_path, compile_plan};
use crate::config::{Device, ModelConfig};
use crate::inference::{load_backend, Backend, InferenceError, LoadSpec, OrtBackend};
use crate::model::{parse_samples, BatchTensor, ModelId};
use crate::tensor::TensorData;
use ort::session::builder::GraphOptimizationLevel;

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

/// `data` as a batch of cnn_lstm's one input ([64, 16] per row).
fn batch(data: &[f32]) -> [BatchTensor; 1] {
    [BatchTensor {
        row_shape: vec![64, 16],
        data: TensorData::F32(data.to_vec()),
    }]
}

/// Runs `rows` rows of cnn_lstm input; the values of its one output.
fn run(backend: &mut dyn Backend, data: &[f32], rows: usize) -> Result<Vec<f32>, InferenceError> {
    let mut out = Vec::new();
    backend.infer(&batch(data), rows, &mut out)?;
    assert_eq!(out.len(), 1, "cnn_lstm has one output");
    assert_eq!(out[0].row_shape, vec![3]);
    Ok(out.remove(0).data.into_f32())
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
    let output = run(&mut backend, &reference.input, reference.rows).unwrap();
    let diff = max_abs_diff(&output, &reference.output);
    assert!(diff <= TOLERANCE, "max |rust - python| = {diff}");
}

#[test]
fn batch_rows_equal_single_row_runs() {
    let rows = 7;
    let input = random_rows(rows, 11);
    let mut backend = backend();
    let batched = run(&mut backend, &input, rows).unwrap();
    for (i, row) in input.chunks_exact(64 * 16).enumerate() {
        let single = run(&mut backend, row, 1).unwrap();
        let diff = max_abs_diff(&single, &batched[i * 3..(i + 1) * 3]);
        assert!(diff <= TOLERANCE, "row {i}: max diff {diff}");
    }
}

#[test]
fn outputs_are_probabilities() {
    let mut backend = backend();
    let output = run(&mut backend, &random_rows(16, 3), 16).unwrap();
    for row in output.chunks_exact(3) {
        assert!(row.iter().all(|p| (0.0..=1.0).contains(p)), "{row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
}

#[test]
fn empty_batch_is_an_error_and_the_backend_survives() {
    let mut backend = backend();
    let marker = BatchTensor {
        row_shape: vec![1],
        data: TensorData::F32(vec![42.0]),
    };
    let mut output = vec![marker.clone()];
    assert_eq!(
        backend.infer(&batch(&[]), 0, &mut output),
        Err(InferenceError::EmptyBatch)
    );
    assert_eq!(
        output,
        vec![marker],
        "a rejected batch must not touch the output"
    );
    assert_eq!(run(&mut backend, &random_rows(1, 5), 1).unwrap().len(), 3);
}

#[test]
fn wrong_input_length_is_an_error() {
    let mut backend = backend();
    let input = random_rows(2, 9);
    assert_eq!(
        run(&mut backend, &input[..input.len() - 1], 2),
        Err(InferenceError::InputLength {
            input: "input".into(),
            expected: 2048,
            got: 2047
        })
    );
    assert_eq!(
        run(&mut backend, &input, 3),
        Err(InferenceError::InputLength {
            input: "input".into(),
            expected: 3072,
            got: 2048
        })
    );
}

#[test]
fn output_buffer_is_cleared_and_reused() {
    let mut backend = backend();
    let mut output = vec![BatchTensor {
        row_shape: vec![3],
        data: TensorData::F32(vec![-1.0; 1000]),
    }];
    let TensorData::F32(before) = &output[0].data else {
        unreachable!()
    };
    let capacity = before.capacity();
    backend
        .infer(&batch(&random_rows(4, 1)), 4, &mut output)
        .unwrap();
    let TensorData::F32(after) = &output[0].data else {
        panic!("a float32 output")
    };
    assert_eq!(after.len(), 12);
    assert_eq!(after.capacity(), capacity, "the buffer is reused");
}

#[test]
fn large_batch_runs() {
    let mut backend = backend();
    let output = run(&mut backend, &random_rows(256, 2), 256).unwrap();
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
    assert_eq!(
        backend.info().signature.to_string(),
        "features: float32[batch, 8] -> risk: float32[batch, 2]"
    );
    let input = [BatchTensor {
        row_shape: vec![8],
        data: TensorData::F32(vec![0.5; 24]),
    }];
    let mut out = Vec::new();
    backend.infer(&input, 3, &mut out).unwrap();
    let out = out.remove(0).data.into_f32();
    assert_eq!(out.len(), 6);
    // Softmax rows.
    for row in out.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
    }
}

#[test]
fn warm_up_samples_must_fit_the_input() {
    let config = LoadSpec {
        warmup_samples: parse_samples(&format!("[{:?}]", vec![0.0; 1024 + 1])).unwrap(),
        ..test_config()
    };
    assert!(matches!(
        OrtBackend::new(&config),
        Err(InferenceError::ModelMismatch(m)) if m.contains("warm-up sample 0") && m.contains("does not fit")
    ));
    let config = LoadSpec {
        warmup_batches: 3,
        warmup_samples: parse_samples(&format!("[{0:?}, {0:?}]", vec![0.25; 1024])).unwrap(),
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
    let output = run(backend.as_mut(), &reference.input, reference.rows).unwrap();
    assert!(max_abs_diff(&output, &reference.output) <= TOLERANCE);
}

#[test]
fn info_reports_discovered_names_and_library() {
    let backend = backend();
    let info = backend.info();
    assert_eq!(
        info.signature.to_string(),
        "input: float32[batch, 64, 16] -> output: float32[batch, 3]"
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

/// The bundled three-input model, with its numpy reference cases.
fn txn_scorer() -> (OrtBackend, Vec<serde_json::Value>) {
    let config = LoadSpec {
        id: ModelId::new("txn_scorer", "1"),
        path: models_dir().join("txn_scorer/1/model.onnx"),
        ..test_config()
    };
    let backend = OrtBackend::new(&config).unwrap();
    let text = std::fs::read_to_string(models_dir().join("txn_scorer.reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    (backend, json["cases"].as_array().unwrap().clone())
}

#[test]
fn several_typed_inputs_and_outputs_match_the_numpy_reference() {
    let (mut backend, cases) = txn_scorer();
    assert_eq!(
        backend.info().signature.to_string(),
        "features: float32[batch, 8], merchant: int64[batch, 1], history: float32[batch, ?, 4] \
         -> score: float32[batch, 2], label: int64[batch, 1]"
    );
    for (i, case) in cases.iter().enumerate() {
        let sample = parse_samples(&format!("[{}]", case["inputs"])).unwrap();
        let tensors = sample[0].tensors(&backend.info().signature).unwrap();
        let mut inputs = Vec::new();
        let rows = crate::model::stack_rows([tensors.as_slice()], &mut inputs);
        let mut out = Vec::new();
        backend.infer(&inputs, rows, &mut out).unwrap();
        let score = out[0].data.clone().into_f32();
        let want: Vec<f32> = case["outputs"]["score"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert!(
            max_abs_diff(&score, &want) <= TOLERANCE,
            "case {i}: {score:?} vs {want:?}"
        );
        let label = case["outputs"]["label"][0].as_i64().unwrap();
        assert_eq!(out[1].data, TensorData::I64(vec![label]), "case {i}");
        assert_eq!(
            (out[0].row_shape.clone(), out[1].row_shape.clone()),
            (vec![2], vec![1])
        );
    }
}

#[test]
fn a_batch_with_a_dynamic_dimension_equals_its_rows_run_alone() {
    let (mut backend, _) = txn_scorer();
    let sig = backend.info().signature.clone();
    let text = (0..5)
        .map(|i| {
            format!(
                r#"{{"features": [{i}, 0.5, -0.25, 1, 0, 0.1, 0.2, 0.3], "merchant": [{}],
                    "history": [[0.1, 0.2, 0.3, {i}], [0.5, 0.5, 0.5, 0.5], [-1, 0, 1, 2]]}}"#,
                i * 13
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let requests: Vec<_> = parse_samples(&format!("[{text}]"))
        .unwrap()
        .iter()
        .map(|s| s.tensors(&sig).unwrap())
        .collect();
    let (mut inputs, mut batched) = (Vec::new(), Vec::new());
    let rows = crate::model::stack_rows(requests.iter().map(Vec::as_slice), &mut inputs);
    assert_eq!(inputs[2].row_shape, vec![3, 4], "three steps per row");
    backend.infer(&inputs, rows, &mut batched).unwrap();
    for (i, r) in requests.iter().enumerate() {
        let mut single = Vec::new();
        let n = crate::model::stack_rows([r.as_slice()], &mut inputs);
        backend.infer(&inputs, n, &mut single).unwrap();
        assert_eq!(
            batched[0].row("score", i).unwrap(),
            single[0].row("score", 0).unwrap()
        );
        assert_eq!(
            batched[1].row("label", i).unwrap(),
            single[1].row("label", 0).unwrap()
        );
    }
}

#[test]
fn an_id_outside_the_embedding_table_fails_the_run_with_the_runtimes_reason() {
    let (mut backend, cases) = txn_scorer();
    let mut inputs_json = cases[0]["inputs"].clone();
    inputs_json["merchant"] = serde_json::json!([64]);
    let sample = parse_samples(&format!("[{inputs_json}]")).unwrap();
    let tensors = sample[0].tensors(&backend.info().signature).unwrap();
    let mut inputs = Vec::new();
    let rows = crate::model::stack_rows([tensors.as_slice()], &mut inputs);
    let err = backend.infer(&inputs, rows, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, InferenceError::Run(m) if m.contains("out of bounds") || m.contains("out of data bounds")),
        "{err}"
    );
    // The session survives and the next batch runs.
    let good = parse_samples(&format!("[{}]", cases[1]["inputs"])).unwrap();
    let tensors = good[0].tensors(&backend.info().signature).unwrap();
    let rows = crate::model::stack_rows([tensors.as_slice()], &mut inputs);
    assert!(backend.infer(&inputs, rows, &mut Vec::new()).is_ok());
}

#[test]
fn compilation_caches_the_optimized_graph_and_gives_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::copy(models_dir().join("cnn_lstm/1/model.onnx"), &model).unwrap();
    let reference = reference();
    let run_with = |compile: bool| {
        let spec = LoadSpec {
            path: model.clone(),
            compile,
            ..test_config()
        };
        let mut b = OrtBackend::new(&spec).unwrap();
        run(&mut b, &reference.input, reference.rows).unwrap()
    };
    let plain = run_with(false);
    assert!(
        !dir.path().join(".optimized").exists(),
        "off: nothing written"
    );
    // First load optimizes and writes the cache; the second reads it.
    let first = run_with(true);
    let cached: Vec<_> = std::fs::read_dir(dir.path().join(".optimized"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0].starts_with("model-") && cached[0].contains("-cpu-"),
        "{cached:?}"
    );
    let plan = compile_plan(true, &model, Device::Cpu);
    assert_eq!(
        plan.level,
        GraphOptimizationLevel::Disable,
        "the cache is already optimized"
    );
    assert!(plan.read_from.ends_with(&cached[0]));
    let second = run_with(true);
    for out in [&first, &second] {
        assert!(max_abs_diff(out, &plain) <= TOLERANCE);
        assert!(max_abs_diff(out, &reference.output) <= TOLERANCE);
    }
}

#[test]
fn a_changed_model_or_another_device_never_reads_an_old_graph() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, b"one").unwrap();
    let cpu = cache_path(&model, Device::Cpu).unwrap();
    assert_ne!(cpu, cache_path(&model, Device::Cuda).unwrap());
    std::fs::write(&model, b"longer").unwrap();
    assert_ne!(
        cpu,
        cache_path(&model, Device::Cpu).unwrap(),
        "size is in the name"
    );
    let off = compile_plan(false, &model, Device::Cpu);
    assert_eq!(
        (off.level, off.write_to, off.read_from),
        (GraphOptimizationLevel::Disable, None, model.clone())
    );
    let on = compile_plan(true, &model, Device::Cpu);
    assert_eq!(on.level, GraphOptimizationLevel::Level3);
    assert!(on.write_to.unwrap().to_string_lossy().contains(".tmp-"));
}

#[test]
fn a_damaged_cached_graph_is_dropped_and_the_model_optimized_again() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::copy(models_dir().join("cnn_lstm/1/model.onnx"), &model).unwrap();
    let cache = cache_path(&model, Device::Cpu).unwrap();
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::write(&cache, b"not a graph").unwrap();
    let spec = LoadSpec {
        path: model.clone(),
        compile: true,
        ..test_config()
    };
    let reference = reference();
    let mut b = OrtBackend::new(&spec).expect("loads from the model instead");
    let out = run(&mut b, &reference.input, reference.rows).unwrap();
    assert!(max_abs_diff(&out, &reference.output) <= TOLERANCE);
    let rewritten = std::fs::read(&cache).unwrap();
    assert_ne!(rewritten, b"not a graph", "the cache holds the new graph");
}

#[test]
fn memory_cleanup_shrinks_the_arena_at_its_interval_and_keeps_the_outputs() {
    let reference = reference();
    let runs = |interval: Option<std::time::Duration>| {
        let spec = LoadSpec {
            cleanup_interval: interval,
            ..test_config()
        };
        let mut b = OrtBackend::new(&spec).unwrap();
        for _ in 0..3 {
            let out = run(&mut b, &reference.input, reference.rows).unwrap();
            assert!(max_abs_diff(&out, &reference.output) <= TOLERANCE);
        }
        b.cleanups()
    };
    assert_eq!(runs(Some(std::time::Duration::ZERO)), 3, "due at every run");
    assert_eq!(
        runs(Some(std::time::Duration::from_secs(3600))),
        0,
        "not due yet"
    );
    assert_eq!(runs(None), 0, "off");
}

/// `cpu_affinity_enabled` hands ONNX Runtime its intra-op threads' cores: a valid list serves
/// the same outputs, and ORT itself reads the option (a malformed one fails the load, named).
#[test]
fn intra_op_threads_take_the_affinity_they_are_given() {
    let reference = reference();
    let allowed = crate::affinity::allowed_cores().unwrap();
    let plan = crate::affinity::CorePlan {
        inference: vec![allowed[0]],
        io: Vec::new(),
    };
    let mut spec = test_config();
    spec.intra_op_threads = 2;
    spec.intra_op_affinity = plan.ort_intra_op_affinities(2);
    let mut backend = OrtBackend::new(&spec).expect("loads with the affinity");
    let output = run(&mut backend, &reference.input, reference.rows).unwrap();
    let diff = max_abs_diff(&output, &reference.output);
    assert!(diff <= TOLERANCE, "max |rust - python| = {diff}");

    spec.intra_op_affinity = Some("not-a-core".into());
    let Err(err) = OrtBackend::new(&spec) else {
        panic!("ORT refuses a malformed affinity");
    };
    let err = err.to_string();
    assert!(err.contains("not-a-core"), "{err}");
}

/// The working memory per row is measured from ONNX Runtime's arena at load: a figure for the
/// bundled CNN+LSTM on CPU, and the measuring batch leaves the outputs unchanged.
#[test]
fn working_memory_per_row_is_measured_at_load() {
    let mut backend = backend();
    let per_row = backend
        .activation_bytes_per_row()
        .expect("the CPU arena keeps statistics");
    // One row's input alone is 64 x 16 float32 = 4 KiB; its activations are at least that.
    assert!(per_row >= 4096, "{per_row} bytes per row");
    assert!(per_row < 64 << 20, "{per_row} bytes per row");
    let reference = reference();
    let output = run(&mut backend, &reference.input, reference.rows).unwrap();
    assert!(max_abs_diff(&output, &reference.output) <= TOLERANCE);
}
