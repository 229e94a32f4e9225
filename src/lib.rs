//! The tools around the serving core (`kbatch-core`), and the `kbatch` command's parts:
//! `bench` (load generator and raw-model benchmark), `demo` (broker, pipeline and load in one
//! process), `launcher` (local broker processes: Apache Kafka, tansu), `topics` (the
//! `create-topics` command), `source` (where a command's configuration comes from), `output`
//! (where a run's final report goes: a table, or JSON with `--json`) and `plot` (SVG charts of
//! the benchmarks' reports).

pub mod alerts;
pub mod bench;
pub mod demo;
pub mod launcher;
pub mod output;
pub mod plot;
pub mod source;
pub mod topics;
