//! The probe engine's wiring: the inventory watch, the engine and its
//! driver, NAT64 discovery and the STUN servers' addresses, all stopped
//! together with the configuration that started them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config;
use crate::dns::server::Shared;
use crate::dns::wire::rtype;
use crate::inventory::{self, Snapshot, ndopt};
use crate::metrics::Limit;
use crate::probe::known64::Known64;
use crate::probe::verdicts::Verdicts;
use crate::probe::{driver, engine};

/// Starts the inventory watch and the probe engine, unless the
/// configuration asks for no probe traffic at all (docs/interface.md),
/// with the NAT64 prefixes of the config (`dns64.prefixes`), RFC 7050
/// discovery and the PREF64 options of router advertisements.
pub(super) fn start_probes(
    shared: &Arc<Shared>,
    probe: &config::Probe,
    nat64: &[ipnet::Ipv6Net],
    stop: &CancellationToken,
) {
    if probe.targets.is_empty() && probe.stun.is_empty() && !probe.destinations {
        // Nothing configured and nothing known (from an engine stopped by
        // a reload): the verdicts are left alone, for whoever stores them
        // (tests do).
        if !nat64.is_empty() || !shared.verdicts.load().nat64.is_empty() {
            publish_config_nat64(shared, nat64);
        }
        return;
    }
    let shared = Arc::clone(shared);
    let probe = probe.clone();
    let nat64 = nat64.to_vec();
    let stop = stop.clone();
    tokio::spawn(async move {
        // STUN names are resolved through our own upstreams; DNS is served
        // meanwhile, and sources stay `unknown` until the first round.
        let stun = tokio::select! {
            () = stop.cancelled() => return,
            s = stun_servers(&shared, &probe.stun) => s,
        };
        let mut engine =
            engine::Engine::new(engine::EngineConfig::new(&probe, stun, rand::random()));
        engine.set_config_nat64(&nat64);
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        let (include, exclude) = (probe.interfaces.clone(), probe.exclude_interfaces.clone());
        let host = move || {
            inventory::Inventory::snapshot(&inventory::System).map(|s| s.filter(&include, &exclude))
        };
        let watcher = tokio::spawn(inventory::watch(host, inventory::POLL, tx));
        let (inputs, inputs_rx) = tokio::sync::mpsc::channel(1024);
        let nat64 = tokio::spawn(discover_nat64(
            Arc::clone(&shared),
            inputs.clone(),
            probe.interval,
        ));
        let ra_inputs = inputs.clone();
        let pref64 = std::thread::Builder::new()
            .name("getapr-pref64".into())
            .spawn(move || router_advertisements(ra_inputs));
        if let Err(e) = &pref64 {
            tracing::warn!("cannot start the router advertisement reader: {e}");
        }
        shared.probe_inputs.store(Some(Arc::new(inputs)));
        let (verdicts, metrics) = (Arc::clone(&shared.verdicts), shared.metrics.probes.clone());
        let evicted = shared.metrics.limit_counter(Limit::Nat64Prefixes);
        driver::run(engine, rx, inputs_rx, verdicts, metrics, evicted, stop).await;
        shared.probe_inputs.store(None);
        // The reader sees the channel closed within RA_POLL and ends.
        drop(pref64);
        nat64.abort();
        watcher.abort();
    });
}

/// A reload changed `dns64.prefixes` and nothing else of the engine's: the
/// running engine takes them, or, with probing off, they are published
/// directly.
pub(super) fn config_nat64_changed(shared: &Shared, nat64: &[ipnet::Ipv6Net]) {
    match shared.probe_inputs.load_full() {
        // The channel has room for 1,024 inputs; were it full, the prefixes
        // would wait for the next reload: a reload never blocks here.
        Some(inputs) => {
            let _ = inputs.try_send(driver::Input::Nat64Config(nat64.to_vec()));
        }
        None => publish_config_nat64(shared, nat64),
    }
}

/// With probing off there is no engine to publish the configured NAT64
/// prefixes: they go into the verdicts as they are, which keep generation
/// 0 (nothing else is known, so nothing is rewritten).
fn publish_config_nat64(shared: &Shared, nat64: &[ipnet::Ipv6Net]) {
    let mut known = Known64::default();
    known.set_config(nat64);
    let mut v = Verdicts::clone(&shared.verdicts.load());
    v.nat64_prefixes = known.union();
    v.nat64 = known.list();
    shared.verdicts.store(Arc::new(v));
}

/// RFC 7050: the AAAA records of `ipv4only.arpa`, asked through our
/// upstreams (a DNS64 resolver synthesizes them), reveal the NAT64
/// prefixes. Asked again when the answer's TTL runs out (it comes from our
/// cache until then), at least every `floor` and at most hourly.
async fn discover_nat64(
    shared: Arc<Shared>,
    tx: tokio::sync::mpsc::Sender<driver::Input>,
    floor: Duration,
) {
    let mut known = None;
    loop {
        let (prefixes, ttl) = match shared
            .lookup(crate::probe::nat64::WELL_KNOWN_NAME, rtype::AAAA)
            .await
        {
            Ok(reply) => {
                let v6: Vec<std::net::Ipv6Addr> = reply
                    .addresses()
                    .into_iter()
                    .filter_map(|a| match a {
                        std::net::IpAddr::V6(v6) => Some(v6),
                        std::net::IpAddr::V4(_) => None,
                    })
                    .collect();
                let ttl = reply.min_ttl().or(reply.negative_ttl()).unwrap_or(0);
                (
                    crate::probe::nat64::discover(&v6),
                    Duration::from_secs(u64::from(ttl)),
                )
            }
            Err(_) => {
                // Upstreams down: keep what we knew and ask again soon.
                tokio::time::sleep(floor).await;
                continue;
            }
        };
        if known.as_ref() != Some(&prefixes) {
            if !prefixes.is_empty() {
                tracing::info!("NAT64 prefixes (RFC 7050): {prefixes:?}");
            }
            if tx
                .send(driver::Input::Nat64(prefixes.clone()))
                .await
                .is_err()
            {
                return;
            }
            known = Some(prefixes);
        }
        tokio::time::sleep(ttl.clamp(floor, Duration::from_secs(3600))).await;
    }
}

/// RFC 8781: the PREF64 options of the router advertisements the kernel
/// passes on (rtnetlink `RTNLGRP_ND_USEROPT`), to the engine as they come,
/// from a thread of their own (see [`ndopt::RaSocket`]) that ends within
/// [`RA_POLL`] of the engine. Where the group cannot be joined, a warning,
/// and the other sources of NAT64 prefixes still work.
fn router_advertisements(tx: tokio::sync::mpsc::Sender<driver::Input>) {
    let mut socket = match ndopt::RaSocket::open(RA_POLL) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "rtnetlink ND user options: {e}; NAT64 prefixes of router advertisements \
                 (PREF64) are not read"
            );
            return;
        }
    };
    let mut failing = false;
    while !tx.is_closed() {
        match socket.recv() {
            Ok(None) => {}
            Ok(Some(advertisements)) => {
                failing = false;
                for ra in advertisements {
                    tracing::debug!(
                        "PREF64 on interface {} from {:?}: {:?}",
                        ra.ifindex,
                        ra.router,
                        ra.pref64
                    );
                    if tx
                        .blocking_send(driver::Input::RouterAdvertisement(ra))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) => {
                // ENOBUFS: advertisements were lost; the next ones repeat
                // them. Anything else: wait a little rather than spin.
                if !failing {
                    tracing::warn!("rtnetlink ND user options: {e}");
                }
                failing = true;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// How often the thread reading router advertisements looks whether the
/// engine is still there.
const RA_POLL: Duration = Duration::from_secs(1);

/// The STUN servers' addresses: IP literals as they are, names looked up
/// (A and AAAA). A name that does not resolve is left out, with a warning.
async fn stun_servers(shared: &Arc<Shared>, servers: &[config::HostPort]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in servers {
        if let Ok(ip) = s.host.parse() {
            out.push(SocketAddr::new(ip, s.port));
            continue;
        }
        let before = out.len();
        for qtype in [rtype::A, rtype::AAAA] {
            if let Ok(reply) = shared.lookup(&s.host, qtype).await {
                out.extend(
                    reply
                        .addresses()
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, s.port)),
                );
            }
        }
        if out.len() == before {
            tracing::warn!(
                "probe.stun: {} does not resolve; NAT detection through it is off",
                s.host
            );
        }
    }
    out
}
