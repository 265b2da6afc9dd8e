//! Configuration: raw TOML (serde, `deny_unknown_fields`) → validated [`Config`].
//!
//! Two stages, as in ripgrep's low/high args. `raw` holds the private
//! `Raw*` structs, which mirror the file and keep the byte span of every
//! value that gets validated (`toml::Spanned`), and the validation that
//! turns them into the public types of `types` with the one-value parsers
//! of `values`. So no unchecked string gets past this module, and every
//! [`Error`] can point at `LINE:COL`. Keys left out take the values of
//! [`Config::default`].
//!
//! `load` takes the text from a file or the embedded default;
//! `addresses` holds the rules the rest of the crate applies to configured
//! addresses (who an `allow` list admits, which upstream would be a
//! forwarding loop).
//!
//! Validation is pure: it reads no files beyond the config itself and asks
//! the OS nothing. That is why an upstream's IPv6 zone by interface name
//! (`fe80::1%eth0`) stays a name in [`Nameserver`]: resolving it is I/O,
//! and its answer changes as interfaces come and go, so the upstream pool
//! does it (and checks such an upstream against our own listen addresses).

mod addresses;
mod error;
mod load;
mod raw;
mod types;
mod values;

pub use addresses::allows;
pub(crate) use addresses::is_own;
pub use error::{Error, Position};
pub use load::{DEFAULT_PATH, DEFAULT_TEXT, Source, check};
pub use types::{
    Config, Dns, Dns64, Filter, HostPort, Http, Nameserver, Policy, Probe, Synthesize, Upstream,
};

#[cfg(test)]
mod tests;
