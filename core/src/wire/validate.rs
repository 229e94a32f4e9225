//! Request validation: what a decoded request must satisfy before it may enter a batch.
//!
//! Invariant: a request that passes can be copied into a model input row of `expected_shape`
//! without any further check: its shape matches, its length matches and every value is finite.

use super::error::WireError;
use super::request::Request;

/// Longest accepted `request_id`, in bytes (it is echoed in headers and logs).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Checks `req` against the model's per-request input shape.
pub fn validate(req: &Request, expected_shape: &[usize]) -> Result<(), WireError> {
    if req.request_id.is_empty() {
        return Err(WireError::InvalidRequestId("must not be empty"));
    }
    if req.request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(WireError::InvalidRequestId("longer than 128 bytes"));
    }
    if let Some(t) = req.timeout_ms.filter(|t| *t < 0) {
        return Err(WireError::NegativeTimeout(t));
    }
    let expected_len = shape_len(&req.shape)?;
    let matches = req.shape.len() == expected_shape.len()
        && req
            .shape
            .iter()
            .zip(expected_shape)
            .all(|(&a, &b)| a as usize == b);
    if !matches {
        return Err(WireError::ShapeMismatch {
            expected: expected_shape.to_vec(),
            got: req.shape.clone(),
        });
    }
    if req.data.len() != expected_len {
        return Err(WireError::DataLength {
            expected: expected_len,
            got: req.data.len(),
        });
    }
    // Without an early exit the check vectorizes; the position is looked up only on failure.
    if !req.data.iter().fold(true, |ok, v| ok & v.is_finite()) {
        let (index, &value) = req
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .expect("a non-finite value exists");
        return Err(WireError::NonFinite { index, value });
    }
    Ok(())
}

fn shape_len(shape: &[i32]) -> Result<usize, WireError> {
    let invalid = |reason| WireError::InvalidShape {
        shape: shape.to_vec(),
        reason,
    };
    if shape.is_empty() {
        return Err(invalid("must have at least one dimension"));
    }
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d)
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| invalid("dimensions must be positive"))?;
        acc.checked_mul(d)
            .ok_or_else(|| invalid("element count overflows"))
    })
}
