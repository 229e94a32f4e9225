//! The seam between the serving pipeline and a model runtime.
//!
//! Invariant: a backend only ever sees batches that passed `ModelInfo::check_input` (at least one
//! row; one `BatchTensor` per model input, in the model's order, each holding `rows` rows of one
//! shape), and on success leaves one `BatchTensor` per model output in the caller's buffer, in
//! the model's order, row `i` of each belonging to input row `i`. Errors are `Clone` so a failed
//! batch can answer every request that was in it.

use super::{InferenceError, ModelInfo};
use crate::tensor::{Tensor, TensorData};

/// One input or output of a whole batch: its rows back to back, and the shape of one row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchTensor {
    /// Dimensions of one row (no batch dimension); the same for every row of the batch.
    pub row_shape: Vec<usize>,
    pub data: TensorData,
}

impl BatchTensor {
    /// Values per row.
    pub fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }

    /// Row `i` as a named tensor (`None` when the batch has no such row).
    pub fn row(&self, name: &str, i: usize) -> Option<Tensor> {
        let len = self.row_len();
        let data = self.data.slice(i * len..(i + 1) * len)?;
        let shape = self.row_shape.iter().map(|&d| d as i32).collect();
        Some(Tensor::new(name, shape, data))
    }
}

/// A loaded model that runs batches.
///
/// `Send` so a backend can move between inference threads; not `Sync` because a session run
/// needs `&mut self` (one batch at a time per backend).
pub trait Backend: Send {
    /// Runs one batch of `rows` rows. On success `outputs` holds one tensor per model output
    /// (its buffers are reused, so a caller that keeps them allocates little per batch).
    fn infer(
        &mut self,
        inputs: &[BatchTensor],
        rows: usize,
        outputs: &mut Vec<BatchTensor>,
    ) -> Result<(), InferenceError>;

    /// Static facts about the loaded model.
    fn info(&self) -> &ModelInfo;

    /// Working memory (activations, scratch) one more row of a batch takes, as measured when
    /// the session was made; `None` when it was not measured.
    fn activation_bytes_per_row(&self) -> Option<u64> {
        None
    }
}

/// Stacks the tensors of several requests (each in the model's input order, all of one shape per
/// input) into one batch, reusing `out`'s buffers; returns the number of rows.
pub fn stack_rows<'a>(
    rows: impl IntoIterator<Item = &'a [Tensor]>,
    out: &mut Vec<BatchTensor>,
) -> usize {
    let mut count = 0;
    for tensors in rows {
        if count == 0 {
            out.resize_with(tensors.len(), BatchTensor::default);
            out.truncate(tensors.len());
            for (b, t) in out.iter_mut().zip(tensors) {
                b.row_shape.clear();
                b.row_shape
                    .extend(t.shape.iter().map(|&d| d.max(0) as usize));
                b.data.clear_as(t.dtype());
            }
        }
        for (b, t) in out.iter_mut().zip(tensors) {
            // Validation gave every row of an input the same type; a mismatch would leave the
            // batch short, which `check_input` then refuses.
            b.data.extend_from(&t.data);
        }
        count += 1;
    }
    count
}
