//! The key that identifies identical inputs: computed by admission on the consumer thread and
//! by the batcher (for requests admitted before deduplication was switched on), compared by the
//! batcher's coalescer.
//!
//! Invariant: two requests share a key only if model, version, and every input tensor's element
//! type, shape and bits are equal (up to BLAKE3 collisions); the encoding is unambiguous because
//! the lengths of every field end it. Tensors are compared by position: admission has put them
//! in the model's input order, so a version-1 request and a version-2 request with the same
//! input share a key (and a result).

use super::ModelId;
use crate::tensor::Tensor;

/// BLAKE3 hash of a request's model, version and input tensors.
pub type DedupKey = [u8; 32];

/// The key of a request's inputs. The values come first so the first tensor's start on a BLAKE3
/// chunk boundary (a prefix before them halves the hashing throughput; docs/benchmarks.md has
/// the figures); the lengths of every field end the encoding, which makes it unambiguous.
/// Values are hashed as their little-endian bit patterns: `0.0` and `-0.0` differ, and a NaN
/// matches only the same NaN. Allocates nothing (a 4 KiB stack buffer).
pub fn dedup_key(model: &ModelId, inputs: &[Tensor]) -> DedupKey {
    let mut hasher = blake3::Hasher::new();
    for t in inputs {
        t.data.for_each_le_chunk(|bytes| {
            hasher.update(bytes);
        });
    }
    for t in inputs {
        hasher.update(&[t.dtype().index() as u8]);
        for dim in &t.shape {
            hasher.update(&dim.to_le_bytes());
        }
    }
    hasher.update(model.name.as_bytes());
    hasher.update(model.version.as_bytes());
    for t in inputs {
        hasher.update(&(t.data.byte_len() as u64).to_le_bytes());
        hasher.update(&(t.shape.len() as u64).to_le_bytes());
    }
    let lens = [inputs.len(), model.name.len(), model.version.len()];
    for len in lens {
        hasher.update(&(len as u64).to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}
