//! The file as written (stage 1: serde structs that keep each value's byte
//! span) and its validation into a [`Config`] (stage 2).

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::addresses::is_own;
use super::types::{Config, Dns, Dns64, Filter, Http, Policy, Probe, Synthesize, Upstream};
use super::values::{
    host_port, interface, nat64_prefix, network, remote_addr, socket_addr, upstream,
};

// ---- stage 1: the file as written -----------------------------------------

type StrList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawConfig {
    pub(super) dns: RawDns,
    pub(super) http: RawHttp,
    pub(super) probe: RawProbe,
    pub(super) policy: RawPolicy,
    pub(super) dns64: RawDns64,
}

// `None` = key absent = the default. Integers stay `i64` (TOML's integer) so
// that a negative or huge value gets our range message, not serde's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [dns] table")]
pub(super) struct RawDns {
    pub(super) listen: Option<StrList>,
    pub(super) upstreams: Option<StrList>,
    pub(super) resolv_conf: Option<Spanned<String>>,
    pub(super) timeout_ms: Option<Spanned<i64>>,
    pub(super) cache_size: Option<Spanned<i64>>,
    pub(super) allow: Option<StrList>,
    pub(super) udp_max_size: Option<Spanned<i64>>,
    pub(super) max_inflight: Option<Spanned<i64>>,
    pub(super) tcp_max_connections: Option<Spanned<i64>>,
    pub(super) workers: Option<Spanned<i64>>,
    pub(super) serve_stale_s: Option<Spanned<i64>>,
    pub(super) failure_cache_s: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [http] table")]
pub(super) struct RawHttp {
    pub(super) listen: Option<StrList>,
    pub(super) allow: Option<StrList>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [probe] table")]
pub(super) struct RawProbe {
    pub(super) interval_ms: Option<Spanned<i64>>,
    pub(super) timeout_ms: Option<Spanned<i64>>,
    pub(super) targets: Option<StrList>,
    pub(super) stun: Option<StrList>,
    pub(super) destinations: Option<bool>,
    pub(super) interfaces: Option<StrList>,
    pub(super) exclude_interfaces: Option<StrList>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [policy] table")]
pub(super) struct RawPolicy {
    pub(super) filter: Option<Spanned<String>>,
    pub(super) break_dnssec: Option<bool>,
    pub(super) table: Option<Spanned<String>>,
    pub(super) first_family_count: Option<Spanned<i64>>,
    pub(super) rtt_margin_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [dns64] table")]
pub(super) struct RawDns64 {
    pub(super) synthesize: Option<Spanned<String>>,
    pub(super) prefixes: Option<StrList>,
}

// ---- stage 2: validation --------------------------------------------------

/// A rejected value: its byte span and a message naming key and input.
pub(super) struct Invalid {
    pub(super) span: Range<usize>,
    pub(super) message: String,
}

fn invalid<T>(span: Range<usize>, message: String) -> Result<T, Invalid> {
    Err(Invalid { span, message })
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, Invalid> {
        let d = Config::default();
        let (raw, dns) = (self.dns, d.dns);

        let listen = list("dns.listen", raw.listen, Len::NonEmpty, socket_addr)?;
        let listen = listen.map_or(dns.listen, values);
        let upstreams = list("dns.upstreams", raw.upstreams, Len::NonEmpty, upstream)?;
        for up in upstreams.iter().flatten() {
            // A zone by name is checked when the pool is built: its
            // interface index is not known without asking the OS.
            if let Upstream::Addr(server) = up.get_ref()
                && server.interface().is_none()
                && is_own(server.addr(), &listen)
            {
                let loops = "is this daemon's own listen address (forwarding loop)";
                return invalid(
                    up.span(),
                    format!("dns.upstreams: upstream {server} {loops}"),
                );
            }
        }
        let resolv_conf = match raw.resolv_conf {
            Some(p) if p.get_ref().is_empty() => {
                return invalid(p.span(), "dns.resolv_conf: must not be empty".to_owned());
            }
            Some(p) => PathBuf::from(p.into_inner()),
            None => dns.resolv_conf,
        };
        let dns = Dns {
            listen,
            upstreams: upstreams.map_or(dns.upstreams, values),
            resolv_conf,
            timeout: ranged("dns.timeout_ms", &raw.timeout_ms, 50..=30_000)?
                .map_or(dns.timeout, Duration::from_millis),
            cache_size: ranged("dns.cache_size", &raw.cache_size, 0..=10_000_000)?
                .unwrap_or(dns.cache_size),
            allow: list("dns.allow", raw.allow, Len::Any, network)?.map_or(dns.allow, values),
            udp_max_size: ranged("dns.udp_max_size", &raw.udp_max_size, 512..=4096)?
                .unwrap_or(dns.udp_max_size),
            max_inflight: ranged("dns.max_inflight", &raw.max_inflight, 1..=65_535)?
                .unwrap_or(dns.max_inflight),
            tcp_max_connections: ranged(
                "dns.tcp_max_connections",
                &raw.tcp_max_connections,
                1..=65_535,
            )?
            .unwrap_or(dns.tcp_max_connections),
            workers: ranged("dns.workers", &raw.workers, 1..=64)?.unwrap_or(dns.workers),
            // RFC 8767 §5 suggests one to three days; a week is the most
            // an answer can still be worth anything.
            serve_stale: ranged("dns.serve_stale_s", &raw.serve_stale_s, 0..=604_800)?
                .map_or(dns.serve_stale, Duration::from_secs),
            // RFC 9520 §3.2: failures SHOULD NOT be cached for more than
            // five minutes.
            failure_cache: ranged("dns.failure_cache_s", &raw.failure_cache_s, 0..=300)?
                .map_or(dns.failure_cache, Duration::from_secs),
        };

        let http = Http {
            listen: list("http.listen", self.http.listen, Len::Any, socket_addr)?
                .map_or(d.http.listen, values),
            allow: list("http.allow", self.http.allow, Len::Any, network)?
                .map_or(d.http.allow, values),
        };

        let (raw, probe) = (self.probe, d.probe);
        let interval = ranged("probe.interval_ms", &raw.interval_ms, 1000..=3_600_000)?
            .map_or(probe.interval, Duration::from_millis);
        let timeout = ranged("probe.timeout_ms", &raw.timeout_ms, 100..=60_000)?
            .map_or(probe.timeout, Duration::from_millis);
        if timeout >= interval {
            // The defaults satisfy the rule, so at least one was written.
            let written = raw.timeout_ms.as_ref().or(raw.interval_ms.as_ref());
            let message = format!(
                "probe.timeout_ms ({}) must be less than probe.interval_ms ({})",
                timeout.as_millis(),
                interval.as_millis()
            );
            return invalid(written.map_or(0..0, Spanned::span), message);
        }
        let probe = Probe {
            interval,
            timeout,
            targets: list("probe.targets", raw.targets, Len::Any, remote_addr)?
                .map_or(probe.targets, values),
            stun: list("probe.stun", raw.stun, Len::Any, host_port)?.map_or(probe.stun, values),
            destinations: raw.destinations.unwrap_or(probe.destinations),
            interfaces: list("probe.interfaces", raw.interfaces, Len::Any, interface)?
                .map_or(probe.interfaces, values),
            exclude_interfaces: list(
                "probe.exclude_interfaces",
                raw.exclude_interfaces,
                Len::Any,
                interface,
            )?
            .map_or(probe.exclude_interfaces, values),
        };

        let filter = match self.policy.filter {
            None => d.policy.filter,
            Some(f) => match f.get_ref().as_str() {
                "off" => Filter::Off,
                "auto" => Filter::Auto,
                other => {
                    let message = format!("policy.filter: {other:?} is not \"off\" or \"auto\"");
                    return invalid(f.span(), message);
                }
            },
        };
        let table = match self.policy.table {
            None => d.policy.table,
            Some(t) => match t.get_ref().as_str() {
                "rfc6724" => crate::policy::Table::Rfc6724,
                "update" => crate::policy::Table::Update,
                other => {
                    let message =
                        format!("policy.table: {other:?} is not \"rfc6724\" or \"update\"");
                    return invalid(t.span(), message);
                }
            },
        };
        let policy = Policy {
            filter,
            break_dnssec: self.policy.break_dnssec.unwrap_or(d.policy.break_dnssec),
            table,
            first_family_count: ranged(
                "policy.first_family_count",
                &self.policy.first_family_count,
                1..=16,
            )?
            .unwrap_or(d.policy.first_family_count),
            // No RTT exceeds the longest probe timeout (60 s), so a larger
            // margin could never matter.
            rtt_margin: ranged(
                "policy.rtt_margin_ms",
                &self.policy.rtt_margin_ms,
                0..=60_000,
            )?
            .map_or(d.policy.rtt_margin, Duration::from_millis),
        };

        let synthesize = match self.dns64.synthesize {
            None => d.dns64.synthesize,
            Some(s) => match s.get_ref().as_str() {
                "auto" => Synthesize::Auto,
                "on" => Synthesize::On,
                "off" => Synthesize::Off,
                other => {
                    let message =
                        format!("dns64.synthesize: {other:?} is not \"auto\", \"on\" or \"off\"");
                    return invalid(s.span(), message);
                }
            },
        };
        let dns64 = Dns64 {
            synthesize,
            prefixes: list(
                "dns64.prefixes",
                self.dns64.prefixes,
                Len::Any,
                nat64_prefix,
            )?
            .map_or(d.dns64.prefixes, values),
        };

        Ok(Config {
            dns,
            http,
            probe,
            policy,
            dns64,
        })
    }
}

#[derive(PartialEq, Eq)]
enum Len {
    Any,
    NonEmpty,
}

/// Parses every entry of a string list; `None` when the key is absent. A
/// repeated entry is always an error: no list here means anything by it, and
/// for listen addresses the second bind would fail at startup instead.
fn list<T: PartialEq>(
    key: &str,
    raw: Option<StrList>,
    len: Len,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<Spanned<T>>>, Invalid> {
    let Some(raw) = raw else { return Ok(None) };
    if len == Len::NonEmpty && raw.get_ref().is_empty() {
        return invalid(raw.span(), format!("{key}: must not be empty"));
    }
    let mut out: Vec<Spanned<T>> = Vec::new();
    for item in raw.into_inner() {
        let input = item.get_ref();
        let reject = |reason: &str| Invalid {
            span: item.span(),
            message: format!("{key}: {input:?} {reason}"),
        };
        let value = parse(input).map_err(|reason| reject(&reason))?;
        if out.iter().any(|o| *o.get_ref() == value) {
            return Err(reject("repeats an earlier entry"));
        }
        out.push(Spanned::new(item.span(), value));
    }
    Ok(Some(out))
}

fn values<T>(list: Vec<Spanned<T>>) -> Vec<T> {
    list.into_iter().map(Spanned::into_inner).collect()
}

/// `None` when absent; the value converted to `T` when inside `range`.
fn ranged<T>(
    key: &str,
    raw: &Option<Spanned<i64>>,
    range: RangeInclusive<T>,
) -> Result<Option<T>, Invalid>
where
    T: TryFrom<i64> + PartialOrd + fmt::Debug,
{
    let Some(raw) = raw else { return Ok(None) };
    match T::try_from(*raw.get_ref()) {
        Ok(v) if range.contains(&v) => Ok(Some(v)),
        _ => invalid(
            raw.span(),
            format!("{key}: {} is outside {range:?}", raw.get_ref()),
        ),
    }
}
