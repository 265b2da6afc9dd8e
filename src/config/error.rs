//! Errors of a configuration that cannot be read or is invalid, with the
//! file and `LINE:COL` they point at.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A config that cannot be read or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct Error {
    /// The file, when the text came from one.
    pub path: Option<PathBuf>,
    /// Where in the text, when the error is about one value or token.
    pub position: Option<Position>,
    /// Names the key and the bad input, e.g. `dns.listen: "127.0.0.1" is not IP:PORT`.
    pub message: String,
}

/// 1-based; the column counts characters, not bytes, as editors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Error {
    pub(super) fn io(path: &Path, e: &io::Error) -> Error {
        let text = e.to_string();
        // "No such file or directory (os error 2)": the errno adds nothing
        // for someone fixing a config path.
        let text = text.split(" (os error").next().unwrap_or(&text);
        Error {
            path: Some(path.to_owned()),
            position: None,
            message: format!("cannot read: {text}"),
        }
    }
}

impl fmt::Display for Error {
    /// `FILE:LINE:COL: message`, dropping whichever part is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}:", path.display())?;
        }
        if let Some(Position { line, column }) = self.position {
            write!(f, "{line}:{column}:")?;
        }
        if self.path.is_some() || self.position.is_some() {
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl Position {
    pub(super) fn at(text: &str, offset: usize) -> Position {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}
