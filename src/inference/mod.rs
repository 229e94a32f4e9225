//! Inference backends (placeholder until the backend lands).
