//! The sidecar's JSON as text for people: aligned columns (two spaces
//! apart, no trailing blanks, as `ss` and `kubectl` print), `-` for an RTT
//! not measured, `none` for an empty list.
//!
//! The bodies are read with what the tables need required and the rest
//! defaulted, so a newer daemon with more fields still renders.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde::Deserialize;
use serde_json::Value;

use crate::probe::verdicts::FLAG_NAMES;

/// The body of `GET /pairs`.
#[derive(Debug, Deserialize)]
pub struct PairsAnswer {
    pairs: Vec<Pair>,
}

#[derive(Debug, Deserialize)]
struct Pair {
    family: String,
    source: String,
    destination: String,
    port: u16,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    scope_id: u32,
    #[serde(default)]
    rtt_ms: Option<f64>,
    /// The IPv4 destination a NAT64 pair reaches.
    #[serde(default)]
    nat64: Option<String>,
}

/// The body of `GET /status`.
#[derive(Debug, Deserialize)]
pub struct StatusAnswer {
    #[serde(default)]
    def_gateway4: Option<String>,
    #[serde(default)]
    def_gateway6: Option<String>,
    #[serde(default)]
    nat64_prefixes: Vec<String>,
    #[serde(default)]
    sources: Vec<Source>,
    #[serde(default)]
    families: Option<BTreeMap<String, String>>,
    #[serde(default)]
    path_mtu: Option<BTreeMap<String, String>>,
    #[serde(default)]
    nat64: Vec<Nat64>,
    #[serde(default)]
    dns64: Option<Dns64>,
    #[serde(default, rename = "CLAT")]
    clat: Option<bool>,
    #[serde(default)]
    ipv4_literals: Option<String>,
    /// The flags, and whatever else a newer daemon sends.
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Nat64 {
    prefix: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    router: Option<String>,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Dns64 {
    synthesize: String,
    active: bool,
}

#[derive(Debug, Deserialize)]
struct Source {
    address: String,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    rtt_ms: Option<f64>,
}

/// One row per pair, best first; a sentence when there is none.
pub fn pairs(host: &str, answer: &PairsAnswer) -> String {
    if answer.pairs.is_empty() {
        return format!("no working pair known for {host}\n");
    }
    let rows = answer.pairs.iter().map(|p| {
        vec![
            p.family.clone(),
            scoped(&p.source, &p.interface, p.scope_id),
            match &p.nat64 {
                Some(v4) => format!("{} (NAT64 to {v4})", p.destination),
                None => scoped(&p.destination, &p.interface, p.scope_id),
            },
            p.port.to_string(),
            rtt(p.rtt_ms),
        ]
    });
    table(&["FAMILY", "SOURCE", "DESTINATION", "PORT", "RTT"], rows)
}

/// The flags (the contract's in its order, then any others a daemon adds,
/// sorted; true ones, then false ones), gateways, NAT64 prefixes and,
/// when sent, where each came from, DNS64, CLAT, IPv4 literals and the
/// family states; then the sources table.
pub fn status(answer: &StatusAnswer) -> String {
    let flags: Vec<(&str, bool)> = FLAG_NAMES
        .iter()
        .copied()
        .chain(
            answer
                .rest
                .keys()
                .map(String::as_str)
                .filter(|k| !FLAG_NAMES.contains(k)),
        )
        .filter_map(|name| Some((name, answer.rest.get(name)?.as_bool()?)))
        .collect();
    let named = |want: bool| {
        let names: Vec<&str> = flags
            .iter()
            .filter(|(_, value)| *value == want)
            .map(|(name, _)| *name)
            .collect();
        none_if_empty(names.join(" "))
    };
    let mut lines = vec![
        ("flags true", named(true)),
        ("flags false", named(false)),
        ("gateway IPv4", gateway(&answer.def_gateway4)),
        ("gateway IPv6", gateway(&answer.def_gateway6)),
        (
            "NAT64 prefixes",
            none_if_empty(answer.nat64_prefixes.join(" ")),
        ),
    ];
    if !answer.nat64.is_empty() {
        let sources: Vec<String> = answer.nat64.iter().map(nat64).collect();
        lines.push(("NAT64 sources", sources.join("; ")));
    }
    if let Some(d) = &answer.dns64 {
        let active = if d.active { "active" } else { "inactive" };
        lines.push(("DNS64", format!("{}, {active}", d.synthesize)));
    }
    if let Some(clat) = answer.clat {
        lines.push(("CLAT", if clat { "yes" } else { "no" }.to_owned()));
    }
    if let Some(literals) = &answer.ipv4_literals {
        lines.push(("IPv4 literals", literals.clone()));
    }
    if let Some(families) = &answer.families {
        let states: Vec<String> = families.iter().map(|(f, s)| format!("{f} {s}")).collect();
        lines.push(("families", none_if_empty(states.join(", "))));
    }
    if let Some(mtu) = &answer.path_mtu {
        let states: Vec<String> = mtu.iter().map(|(f, s)| format!("{f} {s}")).collect();
        lines.push(("path MTU", none_if_empty(states.join(", "))));
    }
    let mut out = table(
        &[],
        lines
            .into_iter()
            .map(|(label, value)| vec![label.to_owned(), value]),
    );
    out.push('\n');
    if answer.sources.is_empty() {
        out.push_str("no source addresses\n");
        return out;
    }
    let rows = answer.sources.iter().map(|s| {
        vec![
            s.address.clone(),
            s.interface.clone(),
            s.class.clone(),
            s.state.clone(),
            rtt(s.rtt_ms),
        ]
    });
    out.push_str(&table(
        &["ADDRESS", "INTERFACE", "CLASS", "STATE", "RTT"],
        rows,
    ));
    out
}

/// `2001:db8:64::/96 ra on eth0 from fe80::1, 1790 s left`, or
/// `64:ff9b::/96 config`.
fn nat64(p: &Nat64) -> String {
    let mut out = format!("{} {}", p.prefix, p.source);
    if let Some(i) = &p.interface {
        out.push_str(&format!(" on {i}"));
    }
    if let Some(r) = &p.router {
        out.push_str(&format!(" from {r}"));
    }
    if let Some(s) = p.expires_in_s {
        out.push_str(&format!(", {s} s left"));
    }
    out
}

/// A link-local address means nothing without its interface: `fe80::2%eth0`,
/// as `ping` and `ssh` take it.
fn scoped(address: &str, interface: &str, scope_id: u32) -> String {
    let link_local = address
        .parse::<Ipv6Addr>()
        .is_ok_and(|ip| ip.is_unicast_link_local());
    if !interface.is_empty() && (scope_id != 0 || link_local) && !address.contains('%') {
        format!("{address}%{interface}")
    } else {
        address.to_owned()
    }
}

fn rtt(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms.is_finite() => format!("{ms:.1} ms"),
        _ => "-".to_owned(),
    }
}

fn gateway(gateway: &Option<String>) -> String {
    none_if_empty(gateway.clone().unwrap_or_default())
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() {
        "none".to_owned()
    } else {
        text
    }
}

/// Left-aligned columns two spaces apart; `header` on top unless empty.
fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = Vec::new();
    if !header.is_empty() {
        all.push(header.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows);
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            all.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `/pairs` example of `docs/interface.md`.
    const PAIRS: &str = include_str!("../../tests/contract/pairs.json");

    /// The `/status` example of `docs/interface.md`.
    const STATUS: &str = include_str!("../../tests/contract/status.json");

    #[test]
    fn pairs_table_of_the_contract_example() {
        let answer = serde_json::from_str(PAIRS).unwrap();
        assert_eq!(
            pairs("www.example.com", &answer),
            "\
FAMILY  SOURCE         DESTINATION        PORT  RTT
ipv6    2001:db8:1::2  2001:db8:ffff::10  443   12.5 ms
ipv4    192.168.1.2    203.0.113.10       443   -
"
        );
    }

    #[test]
    fn link_local_pairs_carry_their_interface() {
        let answer = serde_json::from_str(
            r#"{"host": "printer.local", "port": 631, "pairs": [
                {"family": "ipv6", "source": "fe80::2", "destination": "fe80::10",
                 "port": 631, "interface": "wlan0", "scope_id": 3, "rtt_ms": 0.4}]}"#,
        )
        .unwrap();
        assert!(pairs("printer.local", &answer).contains("fe80::2%wlan0  fe80::10%wlan0  631"));
    }

    #[test]
    fn a_nat64_pair_names_its_ipv4_destination() {
        let answer = serde_json::from_str(
            r#"{"host": "203.0.113.20", "port": 443, "pairs": [
                {"family": "ipv6", "source": "2001:db8:1::2",
                 "destination": "2001:db8:64::cb00:7114", "port": 443,
                 "interface": "eth0", "scope_id": 0, "rtt_ms": null,
                 "nat64": "203.0.113.20"}]}"#,
        )
        .unwrap();
        assert_eq!(
            pairs("203.0.113.20", &answer),
            "\
FAMILY  SOURCE         DESTINATION                                     PORT  RTT
ipv6    2001:db8:1::2  2001:db8:64::cb00:7114 (NAT64 to 203.0.113.20)  443   -
"
        );
    }

    #[test]
    fn no_pair_is_a_sentence() {
        let answer =
            serde_json::from_str(r#"{"host": "x.test", "port": 443, "pairs": []}"#).unwrap();
        assert_eq!(
            pairs("x.test", &answer),
            "no working pair known for x.test\n"
        );
    }

    #[test]
    fn status_of_the_contract_example() {
        let answer = serde_json::from_str(STATUS).unwrap();
        assert_eq!(
            status(&answer),
            "\
flags true      GUA_ok LLA_ok IPv4_ok NAT44 NAT44_tried RFC1918
flags false     ULA_ok NPTv6 NPTv6_tried ULA_present
gateway IPv4    192.168.1.1
gateway IPv6    fe80::1%eth0
NAT64 prefixes  none
DNS64           auto, inactive
CLAT            no
IPv4 literals   native
path MTU        ipv4 ok, ipv6 ok

ADDRESS        INTERFACE  CLASS  STATE  RTT
2001:db8:1::2  eth0       gua    ok     11.2 ms
"
        );
    }

    #[test]
    fn status_shows_extra_flags_and_families_and_tolerates_nulls() {
        let answer = serde_json::from_str(
            r#"{"GUA_ok": false, "NEW_flag": true, "generation": 7,
                "def_gateway4": null, "def_gateway6": null,
                "nat64_prefixes": ["64:ff9b::/96"], "sources": [],
                "families": {"ipv4": "ok", "ipv6": "failed"},
                "path_mtu": {"ipv4": "ok", "ipv6": "blackhole"}}"#,
        )
        .unwrap();
        let text = status(&answer);
        assert!(text.contains("flags true      NEW_flag\n"), "{text}");
        assert!(text.contains("flags false     GUA_ok\n"), "{text}");
        assert!(text.contains("gateway IPv4    none\n"), "{text}");
        assert!(text.contains("NAT64 prefixes  64:ff9b::/96\n"), "{text}");
        assert!(
            text.contains("families        ipv4 ok, ipv6 failed\n"),
            "{text}"
        );
        assert!(
            text.contains("path MTU        ipv4 ok, ipv6 blackhole\n"),
            "{text}"
        );
        assert!(text.ends_with("no source addresses\n"), "{text}");
        assert!(!text.contains("NAT64 sources"), "{text}");
    }

    #[test]
    fn status_shows_where_nat64_prefixes_came_from() {
        let answer = serde_json::from_str(
            r#"{"nat64_prefixes": ["64:ff9b::/96", "2001:db8:64::/96"],
                "nat64": [{"prefix": "2001:db8:64::/96", "source": "ra", "interface": "eth0",
                           "router": "fe80::1", "expires_in_s": 1790},
                          {"prefix": "64:ff9b::/96", "source": "config", "interface": null,
                           "router": null, "expires_in_s": null}],
                "dns64": {"synthesize": "auto", "active": true},
                "CLAT": true, "ipv4_literals": "nat64_pairs", "sources": []}"#,
        )
        .unwrap();
        let text = status(&answer);
        assert!(
            text.contains(
                "NAT64 sources   2001:db8:64::/96 ra on eth0 from fe80::1, 1790 s left; \
                 64:ff9b::/96 config\n"
            ),
            "{text}"
        );
        assert!(text.contains("DNS64           auto, active\n"), "{text}");
        assert!(text.contains("CLAT            yes\n"), "{text}");
        assert!(text.contains("IPv4 literals   nat64_pairs\n"), "{text}");
        assert!(!text.contains("flags true      CLAT"), "{text}");
    }
}
