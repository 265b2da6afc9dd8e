//! The `getapr` command: parses the command line, sets up logging, and maps
//! errors to exit codes (2 for a bad configuration or usage, 1 for anything
//! else, such as a daemon that `pairs` or `status` cannot reach, or a
//! `connect` that nothing answered).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use getapr::client::{self, ApiUrl, Format};

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
    /// Run the daemon: DNS stub, probe engine and HTTP sidecar.
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
    /// Ask the running daemon which (source, destination) pairs work for
    /// HOST, best first (its `/pairs`).
    Pairs {
        /// A name or an IP address.
        host: String,
        /// The destination port [default: 443].
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ask the running daemon for its flags, gateways, NAT64 prefixes and
    /// source addresses (its `/status`).
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Connect to HOST PORT over the working pairs, then relay stdin and
    /// stdout (as `nc` does).
    ///
    /// The daemon's pairs are raced as RFC 8305 says (250 ms apart, each
    /// socket bound to its pair's source); e.g.
    /// `ssh -o ProxyCommand='getapr connect %h %p' HOST`. Without a
    /// reachable daemon it connects like `nc`, with a warning on stderr.
    Connect {
        /// A name or an IP address.
        host: String,
        /// The destination port.
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// The daemon's HTTP sidecar, http://HOST[:PORT] or HOST:PORT
        /// [default: as for `pairs`]
        #[arg(long, value_name = "URL")]
        api: Option<ApiUrl>,
        /// How long the connection attempts may take altogether, in seconds
        /// (fractions allowed).
        // Long enough for a slow path, short enough that a dropped SYN does
        // not hang a script for the kernel's two minutes.
        #[arg(long, value_name = "S", default_value = "10", value_parser = parse_timeout)]
        timeout: Duration,
    },
}

/// Where the daemon is and how to print what it says.
#[derive(Debug, Args)]
struct ApiArgs {
    /// The daemon's HTTP sidecar, http://HOST[:PORT] or HOST:PORT [default:
    /// the first http.listen address of the default config, e.g.
    /// http://127.0.0.1:80]
    #[arg(long, value_name = "URL")]
    api: Option<ApiUrl>,
    /// Print the daemon's JSON as received.
    #[arg(long)]
    json: bool,
}

impl ApiArgs {
    fn resolve(self) -> (ApiUrl, Format) {
        let api = self.api.unwrap_or_else(ApiUrl::from_default_config);
        let format = if self.json {
            Format::Json
        } else {
            Format::Table
        };
        (api, format)
    }
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
        Command::Pairs { host, port, api } => {
            let (api, format) = api.resolve();
            print_answer(client::pairs(&api, &host, port, format))
        }
        Command::Status { api } => {
            let (api, format) = api.resolve();
            print_answer(client::status(&api, format))
        }
        Command::Connect {
            host,
            port,
            api,
            timeout,
        } => {
            // Quiet unless asked: as a ProxyCommand, its stderr is the
            // user's terminal.
            init_logging(tracing::Level::WARN);
            let api = api.unwrap_or_else(ApiUrl::from_default_config);
            client::connect::run(&host, port, &api, timeout)
        }
        Command::Serve { config } => {
            init_logging(tracing::Level::INFO);
            // Loaded once, before the runtime: `dns.workers` sizes it.
            let explicit = config;
            let (config, source) = match getapr::config::Config::discover(explicit.as_deref()) {
                Ok(found) => found,
                Err(e) => {
                    let e = getapr::daemon::Error::from(e);
                    tracing::error!("{e}");
                    return ExitCode::from(e.exit_code() as u8);
                }
            };
            let mut builder = if config.dns.workers > 1 {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(config.dns.workers);
                b
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let runtime = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("getapr: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(getapr::daemon::serve(explicit, config, source)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
    }
}

/// What `pairs` and `status` got: printed to stdout, or the error to
/// stderr with exit status 1 (a bad `--api` never gets here: clap rejects it
/// with status 2).
fn print_answer(answer: Result<String, client::Error>) -> ExitCode {
    match answer {
        // Not `print!`: it panics when stdout is a closed pipe (`| head -1`).
        Ok(text) => match std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("getapr: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Seconds, fractions allowed: more than 0, at most a day.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected seconds, more than 0 and at most 86400, e.g. 10 or 2.5".to_owned()),
    }
}

/// Logs to stderr at `default`, or as `GETAPR_LOG` says (tracing `Targets`
/// syntax, e.g. `debug` or `getapr::dns=trace`).
fn init_logging(default: tracing::Level) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("GETAPR_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
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
