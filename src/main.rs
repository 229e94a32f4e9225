//! The `kbatch` command line. Only argument parsing and dispatch live here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kbatch::config::{load, LoadOptions};

#[derive(Parser)]
#[command(
    name = "kbatch",
    version,
    about = "Kafka-native dynamic-batching inference on ONNX Runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load, merge and validate the configuration; print it (YAML) or every error with its source.
    ValidateConfig(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// Configuration file (YAML or TOML); default `config/default.yaml` when it exists.
    #[arg(long, short, env = "KBATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Profile from `<config dir>/profiles/`: market_hours, off_hours, stress_test.
    #[arg(long, short, env = "KBATCH_PROFILE")]
    profile: Option<String>,
    /// Override one key, e.g. `--set batch_processing.max_batch_size=64` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl ConfigArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            file: self.config.clone(),
            profile: self.profile.clone(),
            overrides: self.overrides.clone(),
            ..LoadOptions::default()
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::ValidateConfig(args) => validate_config(&args),
    }
}

fn validate_config(args: &ConfigArgs) -> ExitCode {
    match load(&args.options()) {
        Ok(loaded) => {
            let files: Vec<String> = loaded
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            println!(
                "# effective configuration (files: {})",
                if files.is_empty() {
                    "none".into()
                } else {
                    files.join(", ")
                }
            );
            match serde_yaml::to_string(&loaded.config) {
                Ok(yaml) => print!("{yaml}"),
                Err(e) => {
                    eprintln!("error: cannot print the configuration: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
