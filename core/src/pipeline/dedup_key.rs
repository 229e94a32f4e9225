//! The key that identifies identical inputs: computed by admission on the consumer thread and
//! by the batcher (for requests admitted before deduplication was switched on), compared by the
//! batcher's coalescer.
//!
//! Invariant: two requests share a key only if model, version, shape and every input bit are
//! equal (up to BLAKE3 collisions); the encoding is unambiguous because the element counts of
//! every field end it.

use super::ModelId;

/// BLAKE3 hash of a request's model, version, shape and data.
pub type DedupKey = [u8; 32];

/// Floats converted per hasher update: 4 KiB, so BLAKE3 can hash whole 1 KiB chunks in parallel.
const FLOATS_PER_UPDATE: usize = 1024;

/// The key of a request's input. Data comes first so it starts on a BLAKE3 chunk boundary (a
/// prefix before it halves the hashing throughput; docs/benchmarks.md has the figures); the
/// element counts of every field end the encoding, which makes it unambiguous. Floats are hashed
/// as their little-endian bit patterns: `0.0` and `-0.0` differ, and a NaN matches only the
/// same NaN. Allocates nothing (a 4 KiB stack buffer).
pub fn dedup_key(model: &ModelId, shape: &[i32], data: &[f32]) -> DedupKey {
    let mut hasher = blake3::Hasher::new();
    let mut buf = [0u8; FLOATS_PER_UPDATE * 4];
    for floats in data.chunks(FLOATS_PER_UPDATE) {
        let bytes = &mut buf[..floats.len() * 4];
        for (dst, x) in bytes.chunks_exact_mut(4).zip(floats) {
            dst.copy_from_slice(&x.to_le_bytes());
        }
        hasher.update(bytes);
    }
    for dim in shape {
        hasher.update(&dim.to_le_bytes());
    }
    hasher.update(model.name.as_bytes());
    hasher.update(model.version.as_bytes());
    let lens = [
        data.len(),
        shape.len(),
        model.name.len(),
        model.version.len(),
    ];
    for len in lens {
        hasher.update(&(len as u64).to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}
