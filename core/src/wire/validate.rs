//! Request validation: what a decoded request must satisfy before it may enter a batch, checked
//! against the input and output specs of the model version it was routed to.
//!
//! Invariant: a request that passes holds exactly one tensor per model input, in the model's
//! input order, each of the model's element type, of a shape the model accepts, with as many
//! values as its shape needs and every float finite; it can be copied into batch rows of that
//! model without any further check.

use super::error::WireError;
use super::request::{Inputs, Request};
use crate::tensor::{DType, Tensor, TensorSpec};

/// Longest accepted `request_id`, in bytes (it is echoed in headers and logs).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Checks `req` against a model's `inputs` and `outputs`, and puts a version-2 request's
/// tensors in the model's input order.
pub fn validate(
    req: &mut Request,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<(), WireError> {
    if req.request_id.is_empty() {
        return Err(WireError::InvalidRequestId("must not be empty"));
    }
    if req.request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(WireError::InvalidRequestId("longer than 128 bytes"));
    }
    if let Some(t) = req.timeout_ms.filter(|t| *t < 0) {
        return Err(WireError::NegativeTimeout(t));
    }
    match &mut req.inputs {
        Inputs::V1(tensor) => {
            let [spec] = inputs else {
                return Err(needs_v2(inputs, outputs));
            };
            let first_output = outputs.first().map(|o| o.dtype);
            if spec.dtype != DType::Float32 || first_output != Some(DType::Float32) {
                return Err(needs_v2(inputs, outputs));
            }
            check_tensor(tensor, spec)
        }
        Inputs::V2(tensors) => arrange(tensors, inputs),
    }
}

/// Checks every tensor of a version-2 request and reorders them as the model lists its inputs.
fn arrange(tensors: &mut Vec<Tensor>, specs: &[TensorSpec]) -> Result<(), WireError> {
    let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
    for tensor in tensors.drain(..) {
        let Some(i) = specs.iter().position(|s| s.name == tensor.name) else {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(WireError::UnknownInput {
                input: tensor.name,
                expected: names.join(", "),
            });
        };
        if slots[i].is_some() {
            return Err(WireError::DuplicateInput(tensor.name));
        }
        check_tensor(&tensor, &specs[i])?;
        slots[i] = Some(tensor);
    }
    for (slot, spec) in slots.into_iter().zip(specs) {
        match slot {
            Some(t) => tensors.push(t),
            None => return Err(WireError::MissingInput(spec.to_string())),
        }
    }
    Ok(())
}

/// One tensor against the spec of the input it fills.
fn check_tensor(t: &Tensor, spec: &TensorSpec) -> Result<(), WireError> {
    let input = || spec.name.clone();
    if t.dtype() != spec.dtype {
        return Err(WireError::DTypeMismatch {
            input: input(),
            expected: spec.dtype,
            got: t.dtype(),
        });
    }
    let expected_len = shape_len(&t.shape).map_err(|reason| WireError::InvalidShape {
        input: input(),
        shape: t.shape.clone(),
        reason,
    })?;
    // Every dimension is positive by now, so the casts are exact.
    let fits = t.shape.len() == spec.shape.len()
        && spec
            .shape
            .iter()
            .zip(&t.shape)
            .all(|(d, &s)| d.accepts(s as usize));
    if !fits {
        return Err(WireError::ShapeMismatch {
            input: input(),
            expected: spec.shape.clone(),
            got: t.shape.clone(),
        });
    }
    if t.data.len() != expected_len {
        return Err(WireError::DataLength {
            input: input(),
            expected: expected_len,
            got: t.data.len(),
        });
    }
    if let Some((index, value)) = t.data.first_non_finite() {
        return Err(WireError::NonFinite {
            input: input(),
            index,
            value,
        });
    }
    Ok(())
}

fn needs_v2(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> WireError {
    let list = |specs: &[TensorSpec]| {
        let all: Vec<String> = specs.iter().map(TensorSpec::to_string).collect();
        all.join(", ")
    };
    WireError::NeedsVersion2 {
        signature: format!("({}) -> ({})", list(inputs), list(outputs)),
    }
}

/// The number of values a request's shape needs.
fn shape_len(shape: &[i32]) -> Result<usize, &'static str> {
    if shape.is_empty() {
        return Err("must have at least one dimension");
    }
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d)
            .ok()
            .filter(|&d| d > 0)
            .ok_or("dimensions must be positive")?;
        acc.checked_mul(d).ok_or("element count overflows")
    })
}
