//! kbatch: serves ONNX models over Kafka with a dynamic batcher.
//!
//! Layers, each owning one thing: `config` (figment-based settings), `wire` (the Avro contract),
//! `inference` (ONNX Runtime backends).

pub mod config;
pub mod inference;
pub mod tier;
pub mod wire;
