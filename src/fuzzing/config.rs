//! The `config` target: the config parser over arbitrary text, and the
//! same text read as a resolv.conf (what `upstreams = ["system"]` reads).

use std::net::SocketAddr;

use crate::config::Config;
use crate::dns::upstream::resolv_conf_nameservers;

/// Any bytes, read as text, give a config or an error with a position,
/// never a panic; a config that parses parses again to the same. Read as
/// a resolv.conf, they give nameservers (never a panic), none of them a
/// link-local address without its zone.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text) {
        Ok(config) => assert_eq!(Config::parse(&text).ok(), Some(config)),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for server in resolv_conf_nameservers(&text) {
        if let SocketAddr::V6(v6) = server.addr() {
            assert!(
                !v6.ip().is_unicast_link_local()
                    || v6.scope_id() != 0
                    || server.interface().is_some()
            );
        }
        let _ = server.to_string();
    }
}
