//! The routes: `http.allow` again (for connections older than a reload),
//! the guard, then `/pairs`, `/status`, `/metrics`, `/healthz`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::SemaphorePermit;

use super::guard::{self, Refusal};
use super::json::{self, Object};
use super::query::{self, Target};
use super::{Api, INVENTORY_TTL, NOT_ALLOWED};
use crate::config::Synthesize;
use crate::dns::server::LookupError;
use crate::dns::wire::{rcode, rtype};
use crate::inventory::{self, Inventory, Snapshot};
use crate::metrics::Limit;
use crate::policy::{self, Options, Pair, RttLead};
use crate::probe::verdicts::Verdicts;

type Answer = Response<Full<Bytes>>;

/// prometheus-client writes OpenMetrics text (it ends with `# EOF`), which
/// Prometheus reads; this is its content type (OpenMetrics 1.0 §"Protocol
/// Negotiation").
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Api {
    /// The answer to one request; `local` is the address the connection
    /// arrived on, `peer` the client's.
    pub(super) async fn respond(
        &self,
        req: Request<Incoming>,
        local: Option<IpAddr>,
        peer: IpAddr,
    ) -> Answer {
        // Checked as the connection was accepted; again here for a
        // keep-alive connection accepted before a reload narrowed
        // `http.allow`, which is closed.
        if !self.allows(peer) {
            tracing::debug!("http: {peer} is no longer inside http.allow: 403");
            return close(self.forbidden(NOT_ALLOWED));
        }
        let hosts = self.hosts.load();
        let mut ours: Vec<IpAddr> = hosts.iter().copied().collect();
        ours.extend(local);
        let host_headers: Vec<&[u8]> = req
            .headers()
            .get_all(header::HOST)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let origins: Vec<&[u8]> = req
            .headers()
            .get_all(header::ORIGIN)
            .iter()
            .map(HeaderValue::as_bytes)
            .filter(|o| !o.trim_ascii().is_empty())
            .collect();
        let authority = req.uri().authority().map(|a| a.as_str());
        match guard::check(&host_headers, authority, &origins, &ours) {
            Ok(()) => {}
            Err(Refusal::BadRequest(why)) => return error(StatusCode::BAD_REQUEST, why),
            Err(Refusal::Forbidden(why)) => {
                tracing::debug!(
                    "http: a request from {peer} refused by the Host/Origin guard: 403"
                );
                return self.forbidden(why);
            }
        }
        let route = match req.uri().path() {
            "/pairs" => Route::Pairs,
            "/status" => Route::Status,
            "/metrics" => Route::Metrics,
            "/healthz" => Route::Healthz,
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    "no such path: /pairs, /status, /metrics and /healthz are",
                );
            }
        };
        if req.method() != Method::GET {
            let mut answer = error(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed");
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return answer;
        }
        match route {
            Route::Pairs => match self.pairs_turn().await {
                Some(_turn) => self.pairs(req.uri().query()).await,
                None => {
                    tracing::debug!("http: /pairs at its bound: 503");
                    self.busy("too many /pairs requests at once")
                }
            },
            Route::Status => json_answer(
                StatusCode::OK,
                status(&self.shared.verdicts.load(), self.dns64(), Instant::now()),
            ),
            Route::Metrics => body(StatusCode::OK, OPENMETRICS, self.shared.metrics.encode()),
            Route::Healthz => body(StatusCode::OK, "text/plain; charset=utf-8", "ok".into()),
        }
    }

    /// A turn to work on `/pairs`: [`Limits::pairs`] at once, up to
    /// [`Limits::pairs_queue`] more waiting in order of arrival (tokio's
    /// semaphore is fair); `None` past that. `/pairs` may wait for the
    /// upstreams, and so must not hold every connection busy: the cheap
    /// routes never wait for a turn.
    ///
    /// [`Limits::pairs`]: super::Limits::pairs
    /// [`Limits::pairs_queue`]: super::Limits::pairs_queue
    async fn pairs_turn(&self) -> Option<(SemaphorePermit<'_>, SemaphorePermit<'_>)> {
        let in_line = self.pairs_line.try_acquire().ok()?;
        // Never closed.
        let running = self.pairs_running.acquire().await.ok()?;
        Some((in_line, running))
    }

    async fn pairs(&self, query: Option<&str>) -> Answer {
        let asked = match query::pairs(query) {
            Ok(q) => q,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        let (destinations, zone) = match &asked.target {
            Target::Ip { addr, zone } => (vec![*addr], zone.as_deref()),
            Target::Name(name) => match self.resolve(name).await {
                Ok(addrs) => {
                    self.shared.learn_resolved(name, &addrs);
                    (addrs, None)
                }
                Err(answer) => return answer,
            },
        };
        // An IPv4-mapped address is IPv4 on the wire (RFC 4291 §2.5.5.2):
        // the pair is an IPv4 one, and says so with the plain IPv4 address.
        let mut unique: Vec<IpAddr> = Vec::with_capacity(destinations.len());
        for d in destinations.into_iter().map(|d| d.to_canonical()) {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        let verdicts = self.shared.verdicts.load_full();
        let host = match self.host(&verdicts).await {
            Ok(h) => h,
            Err(why) => return error(StatusCode::INTERNAL_SERVER_ERROR, &why),
        };
        let host = match zone {
            None => host,
            Some(z) => match on_interface(&host, z) {
                Some(h) => Arc::new(h),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("zone {z:?}: no such interface with addresses"),
                    );
                }
            },
        };
        let policy_config = &self.shared.settings.load().policy;
        let options = Options {
            table: policy_config.table,
            first_family_count: policy_config.first_family_count,
            rtt_margin: policy_config.rtt_margin,
        };
        let (pairs, lead) = policy::ranked_pairs(&unique, &host, &verdicts, &options);
        self.note_rtt_lead(&asked.given, &pairs, lead, options.rtt_margin);
        let mut out = String::with_capacity(256 + 160 * pairs.len());
        let list = json::array(&pairs, |o, p| {
            let family = if p.destination.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            };
            let mut pair = Object::new(o);
            pair.str("family", family)
                .str("source", &p.source.addr.to_canonical().to_string())
                .str("destination", &p.destination.to_string())
                .uint("port", u64::from(asked.port))
                .str("interface", &p.source.interface)
                .uint("scope_id", u64::from(p.source.scope_id))
                .millis("rtt_ms", p.rtt);
            // Only a NAT64 pair has it: the fields of every other pair stay
            // the contract's.
            if let Some(v4) = p.nat64 {
                pair.str("nat64", &v4.to_string());
            }
            pair.finish();
        });
        Object::new(&mut out)
            .str("host", &asked.given)
            .uint("port", u64::from(asked.port))
            .raw("pairs", &list)
            .finish();
        json_answer(StatusCode::OK, out)
    }

    /// Counts and logs an answer whose leading family the RTT rule chose;
    /// logs at info only when that changes from the last answer with both
    /// families, so that a user sees why the order moved without a line per
    /// request.
    fn note_rtt_lead(&self, host: &str, pairs: &[Pair], lead: Option<RttLead>, margin: Duration) {
        let has = |v4: bool| pairs.iter().any(|p| p.destination.is_ipv4() == v4);
        if !(has(true) && has(false)) {
            return;
        }
        let now = match lead {
            None => 0,
            Some(l) if l.ipv4 => 4,
            Some(_) => 6,
        };
        let changed = self.rtt_lead.swap(now, Ordering::Relaxed) != now;
        let Some(lead) = lead else {
            if changed {
                tracing::info!(
                    "pairs: RFC 6724 orders the families again for {host:?}: no measured \
                     RTTs set them more than {margin:?} (policy.rtt_margin_ms) apart"
                );
            }
            return;
        };
        self.shared.metrics.pairs_rtt_first(lead.ipv4);
        let (fast, slow) = if lead.ipv4 {
            ("IPv4", "IPv6")
        } else {
            ("IPv6", "IPv4")
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let line = format!(
            "pairs: {fast} leads for {host:?}: RTT {:.1} ms, {slow}'s {:.1} ms is more than \
             {margin:?} (policy.rtt_margin_ms) slower",
            ms(lead.rtt),
            ms(lead.other_rtt)
        );
        if changed {
            tracing::info!("{line}");
        } else {
            tracing::debug!("{line}");
        }
    }

    /// A and AAAA of `name` at once, one lookup each through the daemon's
    /// cache and upstreams. Addresses of either family make an answer; else
    /// NXDOMAIN is 404, both families failing is 502, and NODATA is no
    /// pairs.
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Answer> {
        let (a, aaaa) = tokio::join!(
            self.shared.lookup(name, rtype::A),
            self.shared.lookup(name, rtype::AAAA)
        );
        let mut addrs = Vec::new();
        let mut nxdomain = false;
        let mut failed = 0;
        for outcome in [a, aaaa] {
            match outcome {
                Ok(reply) => match reply.rcode() {
                    // The answer section's A/AAAA records: the end of a
                    // CNAME chain as the upstream resolved it.
                    rcode::NOERROR => addrs.extend(reply.addresses()),
                    // RFC 8020: NXDOMAIN means no name, whatever the type.
                    rcode::NXDOMAIN => nxdomain = true,
                    _ => failed += 1,
                },
                Err(LookupError::BadName) => {
                    return Err(error(StatusCode::BAD_REQUEST, "not a valid domain name"));
                }
                Err(LookupError::Upstreams) => failed += 1,
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if nxdomain {
            return Err(error(
                StatusCode::NOT_FOUND,
                &format!("{name}: no such name (NXDOMAIN)"),
            ));
        }
        if failed == 2 {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                &format!("{name}: the upstream resolvers failed"),
            ));
        }
        Ok(addrs)
    }

    /// The host's addresses: the probe engine's snapshot once it published
    /// one, else (probing off, or not started yet) read here, through the
    /// same interface filter, at most every [`INVENTORY_TTL`].
    async fn host(&self, verdicts: &Verdicts) -> Result<Arc<Snapshot>, String> {
        if verdicts.generation != 0 {
            return Ok(Arc::clone(&verdicts.host));
        }
        let mut cached = self.inventory.lock().await;
        if let Some((at, snapshot)) = cached.as_ref()
            && at.elapsed() < INVENTORY_TTL
        {
            return Ok(Arc::clone(snapshot));
        }
        let filter = self.interfaces.load_full();
        let read = tokio::task::spawn_blocking(move || {
            inventory::System
                .snapshot()
                .map(|s| s.filter(&filter.0, &filter.1))
        })
        .await;
        match read {
            Ok(Ok(snapshot)) => {
                let snapshot = Arc::new(snapshot);
                *cached = Some((Instant::now(), Arc::clone(&snapshot)));
                Ok(snapshot)
            }
            Ok(Err(e)) => Err(format!("cannot read the host's addresses: {e}")),
            Err(e) => Err(format!("cannot read the host's addresses: {e}")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Pairs,
    Status,
    Metrics,
    Healthz,
}

/// The part of `host` on the interface `zone` names (by name or index):
/// a link-local destination is reached on that link only (RFC 4007 §6).
fn on_interface(host: &Snapshot, zone: &str) -> Option<Snapshot> {
    let index: Option<u32> = zone.parse().ok();
    let on = |name: &str, ifindex: u32| name == zone || index == Some(ifindex);
    if !host.addresses.iter().any(|a| on(&a.interface, a.ifindex)) {
        return None;
    }
    Some(Snapshot {
        addresses: host
            .addresses
            .iter()
            .filter(|a| on(&a.interface, a.ifindex))
            .cloned()
            .collect(),
        gateways4: Vec::new(),
        gateways6: Vec::new(),
    })
}

/// `/status`: the flags under the contract's names, the gateways, the NAT64
/// prefixes (with their sources), DNS64, CLAT and IPv4 literals, every
/// source, plus the family states and the generation. `now` counts the
/// prefixes' lifetimes down.
fn status(v: &Verdicts, synthesize: Synthesize, now: Instant) -> String {
    let mut out = String::with_capacity(1024);
    let mut obj = Object::new(&mut out);
    for (name, value) in v.flags.named() {
        obj.bool(name, value);
    }
    obj.opt_str("def_gateway4", v.flags.def_gateway4.as_deref())
        .opt_str("def_gateway6", v.flags.def_gateway6.as_deref())
        .raw(
            "nat64_prefixes",
            &json::array(&v.nat64_prefixes, |o, p| json::string(o, &p.to_string())),
        )
        .raw(
            "nat64",
            &json::array(&v.nat64, |o, p| {
                let router = p.router.map(|r| r.to_string());
                let mut entry = Object::new(o);
                entry
                    .str("prefix", &p.prefix.to_string())
                    .str("source", p.source.as_str())
                    .opt_str("interface", p.interface.as_deref())
                    .opt_str("router", router.as_deref());
                match p.expires {
                    Some(at) => {
                        entry.uint("expires_in_s", at.saturating_duration_since(now).as_secs())
                    }
                    None => entry.raw("expires_in_s", "null"),
                };
                entry.finish();
            }),
        )
        .raw("dns64", &{
            let mut dns64 = String::new();
            Object::new(&mut dns64)
                .str("synthesize", synthesize_name(synthesize))
                .bool("active", crate::dns::dns64::active(synthesize, v))
                .finish();
            dns64
        })
        .bool("CLAT", v.clat())
        .str("ipv4_literals", v.ipv4_literals().as_str())
        .raw(
            "sources",
            &json::array(&v.sources, |o, s| {
                Object::new(o)
                    .str("address", &s.address.to_string())
                    .str("interface", &s.interface)
                    .str("class", s.class.as_str())
                    .str("state", s.state.as_str())
                    .millis("rtt_ms", s.rtt)
                    .finish();
            }),
        );
    let mut families = String::new();
    Object::new(&mut families)
        .str("ipv4", v.families.ipv4.as_str())
        .str("ipv6", v.families.ipv6.as_str())
        .finish();
    let mut path_mtu = String::new();
    Object::new(&mut path_mtu)
        .str("ipv4", v.path_mtu.ipv4.as_str())
        .str("ipv6", v.path_mtu.ipv6.as_str())
        .finish();
    obj.raw("families", &families)
        .raw("path_mtu", &path_mtu)
        .uint("generation", v.generation)
        .finish();
    out
}

/// `dns64.synthesize` as the config spells it.
fn synthesize_name(mode: Synthesize) -> &'static str {
    match mode {
        Synthesize::Auto => "auto",
        Synthesize::On => "on",
        Synthesize::Off => "off",
    }
}

impl Api {
    /// The answer to a request that came on a connection as it gave up its
    /// slot (see `slots`): a 503 that closes it.
    pub(super) fn gone(&self) -> Answer {
        tracing::debug!("http: a request came as its connection gave way: 503");
        close(self.busy("too many connections to the sidecar"))
    }

    /// 503 with `Retry-After`: the sidecar is busy now, not broken.
    /// Counted, as every 503 is.
    fn busy(&self, message: &str) -> Answer {
        self.shared.metrics.limit_hit(Limit::HttpBusy);
        let mut answer = error(StatusCode::SERVICE_UNAVAILABLE, message);
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        answer
    }

    /// 403, counted, as every 403 is.
    fn forbidden(&self, message: &str) -> Answer {
        self.shared.metrics.limit_hit(Limit::HttpForbidden);
        error(StatusCode::FORBIDDEN, message)
    }
}

/// `answer`, closing the connection after it.
fn close(mut answer: Answer) -> Answer {
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

fn error(status: StatusCode, message: &str) -> Answer {
    json_answer(status, json::error(message))
}

fn json_answer(status: StatusCode, mut json: String) -> Answer {
    json.push('\n');
    body(status, "application/json", json)
}

fn body(status: StatusCode, content_type: &'static str, text: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(text)));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Pairs and flags change with every probe round.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    answer
}
