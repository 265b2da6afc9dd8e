//! DNS64 in the stub (RFC 6147): when it is on, and (to come) AAAA records
//! synthesized from A records under a NAT64 prefix (RFC 6052), and PTR
//! queries under the prefix answered from the embedded IPv4's in-addr.arpa.
//!
//! Pure: the mode comes from the config, the prefixes and family states
//! from the verdicts.

use crate::config::Synthesize;
use crate::probe::verdicts::{State, Verdicts};

/// Whether the stub synthesizes now under `mode`: `On` whenever a NAT64
/// prefix is known; `Auto` only when, besides, the host's IPv4 is known to
/// fail (no native IPv4, no CLAT: a CLAT gives a working IPv4 source) and
/// its IPv6 works, so NAT64 is the only way to IPv4-only names.
pub fn active(mode: Synthesize, v: &Verdicts) -> bool {
    if v.nat64_prefixes.is_empty() {
        return false;
    }
    match mode {
        Synthesize::Off => false,
        Synthesize::On => true,
        Synthesize::Auto => v.families.ipv4 == State::Failed && v.families.ipv6 == State::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::verdicts::Families;

    fn with(ipv4: State, ipv6: State, prefixes: &[&str]) -> Verdicts {
        Verdicts {
            families: Families { ipv4, ipv6 },
            nat64_prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            ..Verdicts::default()
        }
    }

    #[test]
    fn auto_synthesizes_only_without_ipv4_with_ipv6_and_a_prefix() {
        use State::{Failed, Ok, Unknown};
        let wkp = ["64:ff9b::/96"];
        assert!(active(Synthesize::Auto, &with(Failed, Ok, &wkp)));
        for (v4, v6) in [(Ok, Ok), (Unknown, Ok), (Failed, Failed), (Failed, Unknown)] {
            assert!(
                !active(Synthesize::Auto, &with(v4, v6, &wkp)),
                "{v4:?} {v6:?}"
            );
        }
        assert!(!active(Synthesize::Auto, &with(Failed, Ok, &[])));
        assert!(active(Synthesize::On, &with(Ok, Ok, &wkp)));
        assert!(!active(Synthesize::On, &with(Failed, Ok, &[])));
        assert!(!active(Synthesize::Off, &with(Failed, Ok, &wkp)));
    }
}
