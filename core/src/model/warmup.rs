//! Warm-up samples: the requests a new version runs before it takes traffic, read from the file
//! its `model.yaml` names (`warmup.samples`), so ONNX Runtime sizes its buffers and caches for
//! real-looking inputs rather than zeros.
//!
//! The file is a JSON array with one entry per sample: for a model with one input, the input's
//! values (nested arrays give the shape; a flat list fills a fixed shape); for several inputs, an
//! object mapping each input name to its values.
//!
//! Invariant: `WarmupSample::tensors` yields exactly one tensor per model input, in the model's
//! order, of the input's element type and a shape the input accepts, or says why it cannot.

use super::Signature;
use crate::tensor::{Dim, Tensor, TensorData, TensorSpec};

/// One warm-up request as the samples file writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum WarmupSample {
    /// The values of the model's only input.
    Only(serde_json::Value),
    /// Values per input name.
    Named(Vec<(String, serde_json::Value)>),
}

/// Reads a samples file's text.
pub fn parse_samples(text: &str) -> Result<Vec<WarmupSample>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let serde_json::Value::Array(items) = value else {
        return Err("the samples file must be a JSON array of samples".into());
    };
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::Object(map) => Ok(WarmupSample::Named(map.into_iter().collect())),
            v @ serde_json::Value::Array(_) => Ok(WarmupSample::Only(v)),
            other => Err(format!(
                "a sample is an array of values or an object of named inputs, found {other}"
            )),
        })
        .collect()
}

impl WarmupSample {
    /// The sample as one request's tensors for a model of `signature`.
    pub fn tensors(&self, signature: &Signature) -> Result<Vec<Tensor>, String> {
        let specs = &signature.inputs;
        match self {
            WarmupSample::Only(values) => match specs.as_slice() {
                [spec] => Ok(vec![tensor(spec, values)?]),
                _ => Err(format!(
                    "the model has {} inputs: a sample must name each one",
                    specs.len()
                )),
            },
            WarmupSample::Named(named) => {
                if let Some((name, _)) = named
                    .iter()
                    .find(|(n, _)| !specs.iter().any(|s| &s.name == n))
                {
                    return Err(format!("the model has no input named {name:?}"));
                }
                specs
                    .iter()
                    .map(|spec| {
                        let (_, values) = named
                            .iter()
                            .find(|(n, _)| *n == spec.name)
                            .ok_or_else(|| format!("a sample has no values for {spec}"))?;
                        tensor(spec, values)
                    })
                    .collect()
            }
        }
    }
}

/// Zeros for every input (dynamic dimensions 1): the warm-up of a model without samples.
pub fn zeros(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape = smallest_shape(spec);
            let len = shape.iter().product();
            let shape = shape.iter().map(|&d| d as i32).collect();
            Tensor::new(&spec.name, shape, TensorData::zeros(spec.dtype, len))
        })
        .collect()
}

/// The spec's shape with every dynamic dimension 1.
fn smallest_shape(spec: &TensorSpec) -> Vec<usize> {
    spec.shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Dynamic => 1,
        })
        .collect()
}

/// One input's values: the shape from the nesting, or the spec's fixed shape for a flat list of
/// the right length.
fn tensor(spec: &TensorSpec, values: &serde_json::Value) -> Result<Tensor, String> {
    let mut shape = Vec::new();
    let mut numbers = Vec::new();
    flatten(values, 0, &mut shape, &mut numbers)?;
    if shape.iter().product::<usize>() != numbers.len() {
        return Err("sample arrays are ragged: every row needs the same length".into());
    }
    let fits = spec.accepts(&shape);
    let shape = match spec.fixed_len() {
        _ if fits => shape,
        Some(len) if len == numbers.len() => smallest_shape(spec),
        _ => {
            return Err(format!(
                "a sample of shape {shape:?} ({} values) does not fit {spec}",
                numbers.len()
            ))
        }
    };
    let data = TensorData::from_json_numbers(spec.dtype, numbers)
        .map_err(|e| format!("a sample for {spec}: {e}"))?;
    let shape = shape.iter().map(|&d| d as i32).collect();
    Ok(Tensor::new(&spec.name, shape, data))
}

/// Collects the numbers of nested arrays; `shape[depth]` is the length at each depth and must be
/// the same for every array at that depth.
fn flatten(
    v: &serde_json::Value,
    depth: usize,
    shape: &mut Vec<usize>,
    out: &mut Vec<serde_json::Number>,
) -> Result<(), String> {
    match v {
        serde_json::Value::Array(items) => {
            match shape.get(depth) {
                None if depth == shape.len() => shape.push(items.len()),
                Some(&n) if n == items.len() => {}
                _ => return Err("sample arrays are ragged: every row needs the same length".into()),
            }
            items
                .iter()
                .try_for_each(|i| flatten(i, depth + 1, shape, out))
        }
        serde_json::Value::Number(n) if depth == shape.len() => {
            out.push(n.clone());
            Ok(())
        }
        serde_json::Value::Number(_) => {
            Err("sample arrays are ragged: numbers and arrays at one depth".into())
        }
        other => Err(format!("samples hold numbers, found {other}")),
    }
}

#[cfg(test)]
#[path = "warmup_tests.rs"]
mod tests;
