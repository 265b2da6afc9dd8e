//! The `getapr` command: parses the command line, sets up logging, and maps
//! errors to exit codes (2 for a bad configuration, 1 for anything else).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "getapr",
    version,
    about = "DNS stub and prober that hands out the address pairs that really work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: DNS stub (and, later, probe engine and HTTP sidecar).
    Serve {
        /// Configuration file [default: /etc/getapr/getapr.toml if it exists,
        /// else the embedded default]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Parse and validate a configuration file; prints `ok` or
    /// `FILE:LINE:COL: message` (exit status 2).
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match getapr::config::check(&file) {
            Ok(()) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            init_logging();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("getapr: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(getapr::daemon::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
    }
}

/// Logs to stderr at `info`, or as `GETAPR_LOG` says (tracing `Targets`
/// syntax, e.g. `debug` or `getapr::dns=trace`).
fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("GETAPR_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(filter)
        .init();
}
