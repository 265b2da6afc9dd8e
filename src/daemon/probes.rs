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
use crate::inventory::{self, Snapshot};
use crate::probe::{driver, engine};

/// Starts the inventory watch and the probe engine, unless the
/// configuration asks for no probe traffic at all (docs/interface.md).
pub(super) fn start_probes(shared: &Arc<Shared>, probe: &config::Probe, stop: &CancellationToken) {
    if probe.targets.is_empty() && probe.stun.is_empty() && !probe.destinations {
        return;
    }
    let shared = Arc::clone(shared);
    let probe = probe.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        // STUN names are resolved through our own upstreams; DNS is served
        // meanwhile, and sources stay `unknown` until the first round.
        let stun = tokio::select! {
            () = stop.cancelled() => return,
            s = stun_servers(&shared, &probe.stun) => s,
        };
        let engine = engine::Engine::new(engine::EngineConfig::new(&probe, stun, rand::random()));
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
        shared.probe_inputs.store(Some(Arc::new(inputs)));
        let (verdicts, metrics) = (Arc::clone(&shared.verdicts), shared.metrics.probes.clone());
        driver::run(engine, rx, inputs_rx, verdicts, metrics, stop).await;
        shared.probe_inputs.store(None);
        nat64.abort();
        watcher.abort();
    });
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
