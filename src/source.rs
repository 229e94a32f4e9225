//! Where a command's configuration comes from: a file, a profile and `--set` overrides, the
//! same three flags on every command that loads one.

use std::path::PathBuf;

use clap::Args;
use kbatch_core::config::LoadOptions;

/// Where the configuration comes from (every command that loads one).
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigSource {
    /// Configuration file (YAML or TOML); default `config/default.yaml` when it exists.
    #[arg(long, short, env = "KBATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Profile from `<config dir>/profiles/`: market_hours, off_hours, stress_test.
    #[arg(long, short, env = "KBATCH_PROFILE")]
    pub profile: Option<String>,
    /// Override one configuration key, e.g. `--set kafka.topics.low=my.low` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigSource {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            file: self.config.clone(),
            profile: self.profile.clone(),
            overrides: self.overrides.clone(),
            ..LoadOptions::default()
        }
    }
}
