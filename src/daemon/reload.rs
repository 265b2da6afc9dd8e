//! Reload: a new configuration applied all or nothing while the daemon
//! runs (listeners added and closed, upstreams, cache, sidecar, probes).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::listeners::{bind_http, bind_listener, http_hosts};
use super::probes::{config_nat64_changed, start_probes};
use super::{Daemon, Error, settings};
use crate::config::Config;
use crate::sync::lock;

impl Daemon {
    /// Applies `config` for [`super::Handle::reload`]: what can fail (the
    /// upstreams, new sockets) comes first, so an error changes nothing.
    pub(super) fn apply(&mut self, config: Config) -> Result<(), Error> {
        let settings = settings(&config)?;
        let mut fresh = Vec::new();
        for &addr in &config.dns.listen {
            if !self.listeners.iter().any(|l| l.configured == addr) {
                // Dropping `fresh` on error closes what was bound so far.
                fresh.push(bind_listener(addr, self.config.dns.workers)?);
            }
        }
        let mut fresh_http = Vec::new();
        for &addr in &config.http.listen {
            if !self.http.iter().any(|l| l.configured == addr) {
                fresh_http.push(bind_http(addr)?);
            }
        }
        // Nothing can fail from here on.
        // Before any new sidecar listener starts, so none answers by the
        // old `http.allow`.
        self.api.set_allow(config.http.allow.clone());
        let old = self.shared.settings.load();
        let same_upstreams = old.pool.addrs().eq(settings.pool.addrs());
        self.shared.settings.store(Arc::new(settings));
        {
            let mut cache = lock(&self.shared.cache);
            if !same_upstreams {
                // Answers from resolvers the user just replaced are not kept.
                cache.clear();
            }
            if config.dns.cache_size != self.config.dns.cache_size {
                cache.resize(config.dns.cache_size);
            }
        }
        self.listeners.retain(|l| {
            let keep = config.dns.listen.contains(&l.configured);
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        for mut l in fresh {
            l.start(&self.shared);
            self.listeners.push(l);
        }
        self.http.retain(|l| {
            let keep = config.http.listen.contains(&l.configured);
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        for mut l in fresh_http {
            l.start(&self.api);
            self.http.push(l);
        }
        self.api.set_hosts(http_hosts(&self.http));
        if config.probe.interfaces != self.config.probe.interfaces
            || config.probe.exclude_interfaces != self.config.probe.exclude_interfaces
        {
            self.api.set_interfaces(
                config.probe.interfaces.clone(),
                config.probe.exclude_interfaces.clone(),
            );
        }
        self.api.set_dns64(config.dns64.synthesize);
        if config.probe != self.config.probe {
            self.probes.cancel();
            self.probes = CancellationToken::new();
            start_probes(
                &self.shared,
                &config.probe,
                &config.dns64.prefixes,
                &self.probes,
            );
        } else if config.dns64.prefixes != self.config.dns64.prefixes {
            // The engine goes on; only its configured prefixes change.
            config_nat64_changed(&self.shared, &config.dns64.prefixes);
        }
        self.config = config;
        Ok(())
    }
}
