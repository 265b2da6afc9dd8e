//! Reading a configuration: text, a file, the embedded default, and which
//! of them the daemon starts with.

use std::io;
use std::path::{Path, PathBuf};

use super::error::{Error, Position};
use super::raw::RawConfig;
use super::types::Config;

/// The embedded default configuration (annotated), used when no file exists.
pub const DEFAULT_TEXT: &str = include_str!("../../config/getapr.toml");

/// Where [`Config::discover`] looks when no file is named.
pub const DEFAULT_PATH: &str = "/etc/getapr/getapr.toml";

/// Where a configuration came from (for logs and reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl Config {
    /// Parses and validates TOML text. Errors carry a position but no path.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error {
            path: None,
            position: e.span().map(|span| Position::at(text, span.start)),
            // toml's Display adds a source snippet over several lines; we
            // print our own `LINE:COL:` prefix, so keep the message alone.
            message: e.message().lines().next().unwrap_or_default().to_owned(),
        })?;
        raw.validate().map_err(|invalid| Error {
            path: None,
            position: Some(Position::at(text, invalid.span.start)),
            message: invalid.message,
        })
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
        Config::parse_file(path, &text)
    }

    fn parse_file(path: &Path, text: &str) -> Result<Config, Error> {
        Config::parse(text).map_err(|e| Error {
            path: Some(path.to_owned()),
            ..e
        })
    }

    /// The compiled-in [`DEFAULT_TEXT`].
    pub fn embedded() -> Config {
        // Cannot fail for a released binary: `tests::embedded_is_default`
        // parses this very text, so a broken default file fails `cargo test`.
        Config::parse(DEFAULT_TEXT).expect("embedded config/getapr.toml is valid")
    }

    /// The `explicit` file (which must exist), else [`DEFAULT_PATH`] when it
    /// exists, else the embedded default.
    pub fn discover(explicit: Option<&Path>) -> Result<(Config, Source), Error> {
        discover_from(explicit, Path::new(DEFAULT_PATH))
    }
}

/// For `getapr check-config FILE`.
pub fn check(path: &Path) -> Result<(), Error> {
    Config::load(path).map(drop)
}

pub(super) fn discover_from(
    explicit: Option<&Path>,
    default: &Path,
) -> Result<(Config, Source), Error> {
    if let Some(path) = explicit {
        return Ok((Config::load(path)?, Source::File(path.to_owned())));
    }
    // Read rather than test for existence first: no window in which the file
    // can vanish, and a default file we may not read is an error, not absent.
    match std::fs::read_to_string(default) {
        Ok(text) => Ok((
            Config::parse_file(default, &text)?,
            Source::File(default.to_owned()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Config::embedded(), Source::Embedded)),
        Err(e) => Err(Error::io(default, &e)),
    }
}
