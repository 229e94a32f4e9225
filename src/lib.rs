//! The tools around the serving core (`kbatch-core`), and the `kbatch` command's parts:
//! `bench` (load generator and raw-model benchmark), `demo` (broker, pipeline and load in one
//! process), `launcher` (local broker processes: Apache Kafka, tansu), `topics` (the
//! `create-topics` command) and `source` (where a command's configuration comes from).

pub mod bench;
pub mod demo;
pub mod launcher;
pub mod source;
pub mod topics;
