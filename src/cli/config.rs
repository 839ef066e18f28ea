//! `kafka-relay config check`: loads the configuration as `run` would (the
//! file, `KAFKA_RELAY_*` overrides, secret files, defaults), reports every
//! problem (exit 2), and otherwise prints the effective configuration as
//! TOML with every secret shown as `"***"`. It reaches no cluster; `check`
//! does that.

use std::path::PathBuf;

use clap::Subcommand;

use super::Failure;

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Validate the configuration and print it as the relay runs it, secrets hidden.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

pub fn run(action: ConfigAction) -> Result<(), Failure> {
    match action {
        ConfigAction::Check { config } => {
            let loaded = super::load(&config)?;
            println!(
                "# {}: valid; as the relay runs it, secrets hidden",
                config.display()
            );
            print!("{}", loaded.effective_toml());
            Ok(())
        }
    }
}
