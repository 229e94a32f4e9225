//! Where a run's final report goes, the same for every command that ends with one (`serve`,
//! `bench`, `bench-model`, `demo`): a labelled table on stdout by default, the JSON document on
//! stdout with `--json`, and the JSON in a file as well with `--report PATH`.
//!
//! Invariant: the report is written to stdout once, as a table or as JSON, never both; with
//! `--json`, stdout holds the JSON document alone (progress and notes go to stderr), so
//! `kbatch bench --json | jq` works.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use kbatch_core::telemetry::table::Table;
use serde::Serialize;
use thiserror::Error;

/// How the final report is printed and where it is saved.
#[derive(Debug, Clone, Default, Args)]
pub struct ReportArgs {
    /// Print the final report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the final report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("cannot serialize the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing the report to {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the report to stdout: {0}")]
    Stdout(std::io::Error),
}

impl ReportArgs {
    /// Prints `table` (or `report` as JSON with `--json`) and writes the JSON file of
    /// `--report`.
    pub fn emit<R: Serialize + ?Sized>(
        &self,
        table: &Table,
        report: &R,
    ) -> Result<(), OutputError> {
        let json = if self.json || self.report.is_some() {
            Some(serde_json::to_string_pretty(report)? + "\n")
        } else {
            None
        };
        if let (Some(path), Some(json)) = (&self.report, &json) {
            std::fs::write(path, json).map_err(|source| OutputError::File {
                path: path.clone(),
                source,
            })?;
            eprintln!("wrote {}", path.display());
        }
        let text = match json {
            Some(json) if self.json => json,
            _ => table.render(),
        };
        // Not `print!`: a closed pipe (`| head`) is an error to report, not a panic.
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(OutputError::Stdout)
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
