//! The `config` target: the config parser over arbitrary text.

use crate::config::Config;

/// Any bytes, read as text, give a config or an error with a position,
/// never a panic; a config that parses parses again to the same.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text) {
        Ok(config) => assert_eq!(Config::parse(&text).ok(), Some(config)),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
