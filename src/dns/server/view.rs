//! What the verdicts make of an upstream reply: the rewritten view, kept
//! in the cache entry per verdict generation, `[policy]` and
//! `dns64.synthesize`, and the lookup of the name's other family when the
//! rewrite needs its answer.
//!
//! DNS64 ([`dns64`]) lives here too: while it is active, the view of an
//! AAAA answer with no usable AAAA (or of a PTR under a NAT64 prefix) is
//! the synthesized answer, made from the A (or `in-addr.arpa` PTR) answer
//! in the cache or looked up through the same flights, then rewritten
//! like any other. The cache keeps the upstream's answer; a synthesized
//! view holds for the verdicts' generation it was made under (which moves
//! when the families or the NAT64 prefixes change) and no longer than the
//! records it was made from.

use crate::sync::lock;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Settings;
use super::Shared;
use crate::config::{Filter, Synthesize};
use crate::dns::cache::{Cache, Key};
use crate::dns::dns64;
use crate::dns::rewrite::{self, Context, Other};
use crate::dns::wire::{self, Reply};
use crate::metrics::Rewrite;
use crate::probe::verdicts::{State, Verdicts};
use ipnet::Ipv6Net;

/// How long an answer whose every address would be filtered waits for the
/// name's other family (module doc of [`rewrite`]); past it the answer goes
/// out unfiltered. The other query usually runs beside the first one (see
/// [`Shared::other_family_beside`]), so this bounds a slow upstream, not the
/// usual case.
const OTHER_FAMILY_DEADLINE: Duration = Duration::from_millis(500);
/// How long a DNS64 synthesis waits for the A (or `in-addr.arpa` PTR)
/// answer it is made from; past it the upstream's answer goes out as it
/// is. Longer than [`OTHER_FAMILY_DEADLINE`]: without it the client gets
/// nothing it can use, but under the clients' usual 2 s timeout.
const DNS64_DEADLINE: Duration = Duration::from_millis(1500);

/// A cache entry: the upstream's reply, and what the verdicts made of it
/// for one `Stamp` (recomputed when the stamp moves, not per answer).
#[derive(Debug)]
pub struct Cached {
    pub reply: Arc<Reply>,
    pub(super) view: Option<(Stamp, View)>,
}

impl Cached {
    pub fn new(reply: Arc<Reply>) -> Cached {
        Cached { reply, view: None }
    }
}

/// An answer as the verdicts make it, and what they did to it (counted
/// each time it is sent, not each time it is computed).
#[derive(Debug, Clone)]
pub(super) struct View {
    pub(super) reply: Arc<Reply>,
    pub(super) rewrite: Option<Rewrite>,
    /// DNS64 synthesized it.
    pub(super) synthesized: bool,
    /// When it stops holding though the stamp has not moved: a view made
    /// with DNS64 from another answer lives no longer than that answer's
    /// records. `None` for the others, which hold as long as the entry.
    pub(super) until: Option<Instant>,
}

impl View {
    /// The upstream's reply as it is.
    fn plain(upstream: &Arc<Reply>) -> View {
        View {
            reply: Arc::clone(upstream),
            rewrite: None,
            synthesized: false,
            until: None,
        }
    }

    /// Whether it still holds at `now` (its stamp aside).
    pub(super) fn holds(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// What a rewritten view depends on: the verdicts, the `[policy]` and
/// `dns64.synthesize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    generation: u64,
    filter: Filter,
    break_dnssec: bool,
    dns64: Synthesize,
}

impl Stamp {
    pub(super) fn new(verdicts: &Verdicts, settings: &Settings) -> Stamp {
        Stamp {
            generation: verdicts.generation,
            filter: settings.policy.filter,
            break_dnssec: settings.policy.break_dnssec,
            dns64: settings.dns64,
        }
    }
}

/// The NAT64 prefixes DNS64 synthesizes under now: none while it is not
/// [`dns64::active`].
pub(super) fn dns64_prefixes<'a>(verdicts: &'a Verdicts, settings: &Settings) -> &'a [Ipv6Net] {
    if dns64::active(settings.dns64, verdicts) {
        &verdicts.nat64_prefixes
    } else {
        &[]
    }
}

/// What a view is computed with: the rewrite's context, the prefixes
/// DNS64 synthesizes under (none while it is off) and the stamp the view
/// is kept under.
pub(super) struct Env<'a> {
    ctx: Context<'a>,
    prefixes: &'a [Ipv6Net],
    stamp: Stamp,
}

impl<'a> Env<'a> {
    pub(super) fn new(verdicts: &'a Verdicts, settings: &Settings, stamp: Stamp) -> Env<'a> {
        Env {
            ctx: Context {
                verdicts,
                filter: settings.policy.filter,
                break_dnssec: settings.policy.break_dnssec,
            },
            prefixes: dns64_prefixes(verdicts, settings),
            stamp,
        }
    }
}

/// The view of `upstream` (in the cache `age` seconds) for `env`'s stamp,
/// from the entry when it is current, else computed with what it needs
/// from the cache (the other family's answer for the rewrite, the A or
/// PTR answer for DNS64) and kept. `None` when the cache lacks that.
pub(super) fn view_from_cache(
    cache: &mut Cache<Cached>,
    key: &Key,
    upstream: &Arc<Reply>,
    age: u32,
    env: &Env<'_>,
    now: Instant,
) -> Option<View> {
    if let Some(entry) = cache.peek_mut(key, now)
        && Arc::ptr_eq(&entry.reply, upstream)
        && let Some((s, view)) = &entry.view
        && *s == env.stamp
        && view.holds(now)
    {
        return Some(view.clone());
    }
    let (qtype, do_bit) = (key.qtype(), key.do_bit());
    if let Some(need) = dns64::need(key.qname(), qtype, do_bit, upstream, env.prefixes) {
        let (other, other_age) = need_keys(key, &need).iter().find_map(|k| {
            let (e, a) = cache.peek_aged(k, now)?;
            Some((Arc::clone(&e.reply), age_secs(a)))
        })?;
        let view = synthesized_view(key, upstream, age, &other, other_age, env, now);
        keep(cache, key, upstream, env.stamp, &view, now);
        return Some(view);
    }
    let ctx = &env.ctx;
    let mut outcome = if rewrite::exempt(key.qname()) {
        rewrite::Rewritten::Same
    } else {
        rewrite::rewrite(upstream, qtype, do_bit, ctx, Other::Unasked)
    };
    if outcome == rewrite::Rewritten::NeedOther {
        let other_type = rewrite::other_type(qtype)?;
        // The other family as a client asked it (same DO and CD), else as
        // the daemon asks it.
        let other = [
            Key::new(key.qname(), other_type, key.qclass(), do_bit, key.cd()),
            Key::new(key.qname(), other_type, key.qclass(), false, false),
        ]
        .iter()
        .find_map(|k| cache.peek_mut(k, now).map(|e| Arc::clone(&e.reply)))?;
        outcome = rewrite::rewrite(upstream, qtype, do_bit, ctx, Other::Reply(&other));
    }
    let view = into_view(outcome, upstream, key);
    keep(cache, key, upstream, env.stamp, &view, now);
    Some(view)
}

/// Keeps `view` in the entry of `upstream` (if it is still the entry's
/// reply) for `stamp`, unless it already stopped holding.
fn keep(
    cache: &mut Cache<Cached>,
    key: &Key,
    upstream: &Arc<Reply>,
    stamp: Stamp,
    view: &View,
    now: Instant,
) {
    if view.holds(now)
        && let Some(entry) = cache.peek_mut(key, now)
        && Arc::ptr_eq(&entry.reply, upstream)
    {
        entry.view = Some((stamp, view.clone()));
    }
}

/// The cache keys of DNS64's second lookup: with the client's DO and CD,
/// else as the daemon asks it; for a DO client only the first, since an
/// answer asked without DO hides the RRSIGs that forbid synthesis.
fn need_keys(key: &Key, need: &dns64::Need) -> [Key; 2] {
    let exact = Key::new(
        &need.qname,
        need.qtype,
        key.qclass(),
        key.do_bit(),
        key.cd(),
    );
    let plain = if key.do_bit() {
        exact.clone()
    } else {
        Key::new(&need.qname, need.qtype, key.qclass(), false, false)
    };
    [exact, plain]
}

/// The DNS64 view of `upstream` made from `other` (the A or PTR answer):
/// the synthesized answer, rewritten like any other and holding as long
/// as its records; or, with nothing to synthesize from, the upstream's
/// answer for as long as `other` may be cached.
fn synthesized_view(
    key: &Key,
    upstream: &Arc<Reply>,
    age: u32,
    other: &Reply,
    other_age: u32,
    env: &Env<'_>,
    now: Instant,
) -> View {
    let (qtype, do_bit) = (key.qtype(), key.do_bit());
    let made = dns64::synthesize(qtype, upstream, age, other, other_age, env.prefixes, do_bit);
    let Some(made) = made else {
        let left = crate::dns::cache::lifetime(other)
            .map_or(0, |d| d.as_secs().saturating_sub(u64::from(other_age)));
        return View {
            until: Some(now + Duration::from_secs(left)),
            ..View::plain(upstream)
        };
    };
    let reply = Arc::new(made.reply);
    let outcome = rewrite::rewrite(&reply, qtype, do_bit, &env.ctx, Other::Reply(other));
    View {
        synthesized: true,
        until: Some(now + Duration::from_secs(u64::from(made.ttl))),
        ..into_view(outcome, &reply, key)
    }
}

fn into_view(outcome: rewrite::Rewritten, upstream: &Arc<Reply>, key: &Key) -> View {
    let (reply, rewrite) = match outcome {
        rewrite::Rewritten::Same | rewrite::Rewritten::NeedOther => (Arc::clone(upstream), None),
        rewrite::Rewritten::Reordered(r) => (Arc::new(r), Some(Rewrite::Reordered)),
        rewrite::Rewritten::Filtered {
            reply,
            removed,
            nodata,
            reason,
            why,
        } => {
            tracing::debug!(
                qtype = key.qtype(),
                removed,
                nodata,
                "answer filtered: {why}"
            );
            (Arc::new(reply), Some(Rewrite::Filtered(reason)))
        }
    };
    View {
        reply,
        rewrite,
        synthesized: false,
        until: None,
    }
}

pub(super) fn age_secs(age: Duration) -> u32 {
    u32::try_from(age.as_secs()).unwrap_or(u32::MAX)
}

impl Shared {
    /// Starts, beside the client's query, the lookup its answer is likely
    /// to need, so it costs no extra round trip: DNS64's A (or
    /// `in-addr.arpa` PTR) lookup while DNS64 is active; else, when the
    /// verdicts already say the asked family cannot work, the other
    /// family's answer that filtering needs.
    pub(super) fn other_family_beside(
        self: &Arc<Self>,
        key: &Key,
        settings: &Settings,
    ) -> Option<tokio::task::JoinHandle<Option<Arc<Reply>>>> {
        let verdicts = self.verdicts.load();
        let prefixes = dns64_prefixes(&verdicts, settings);
        let exempt = rewrite::exempt(key.qname());
        let (qclass, do_bit, cd) = (key.qclass(), key.do_bit(), key.cd());
        let (name, qtype, do_bit, cd) = match key.qtype() {
            wire::rtype::AAAA if !prefixes.is_empty() && !exempt => {
                (key.qname().to_vec(), wire::rtype::A, do_bit, cd)
            }
            wire::rtype::PTR if !prefixes.is_empty() => {
                let v4 = dns64::ptr_target(key.qname(), prefixes)?;
                (dns64::in_addr_name(v4), wire::rtype::PTR, do_bit, cd)
            }
            _ => {
                let other = rewrite::other_type(key.qtype())?;
                let family = if key.qtype() == wire::rtype::A {
                    verdicts.families.ipv4
                } else {
                    verdicts.families.ipv6
                };
                if settings.policy.filter != Filter::Auto || family != State::Failed || exempt {
                    return None;
                }
                (key.qname().to_vec(), other, false, false)
            }
        };
        let shared = Arc::clone(self);
        Some(tokio::spawn(async move {
            shared
                .lookup_wire_with(&name, qtype, qclass, do_bit, cd)
                .await
                .ok()
        }))
    }

    /// The reply to send for `upstream` (in the cache `age` seconds) under
    /// the present verdicts: the cached view when it is current, else
    /// computed (asking for the other family, or DNS64's A or PTR answer,
    /// when it needs it; `beside` is that lookup when it was started
    /// already) and kept in the cache entry.
    pub(super) async fn view(
        self: &Arc<Self>,
        key: &Key,
        upstream: &Arc<Reply>,
        age: u32,
        settings: &Settings,
        beside: Option<tokio::task::JoinHandle<Option<Arc<Reply>>>>,
    ) -> View {
        let verdicts = self.verdicts.load_full();
        let stamp = Stamp::new(&verdicts, settings);
        let env = Env::new(&verdicts, settings, stamp);
        if let Some(view) = view_from_cache(
            &mut lock(&self.cache),
            key,
            upstream,
            age,
            &env,
            Instant::now(),
        ) {
            return view;
        }
        let need = dns64::need(
            key.qname(),
            key.qtype(),
            key.do_bit(),
            upstream,
            env.prefixes,
        );
        let (other_type, do_bit, cd, deadline) = match &need {
            Some(need) => (need.qtype, key.do_bit(), key.cd(), DNS64_DEADLINE),
            None => match rewrite::other_type(key.qtype()) {
                Some(t) => (t, false, false, OTHER_FAMILY_DEADLINE),
                None => return View::plain(upstream),
            },
        };
        let other_name = need.as_ref().map_or(key.qname(), |n| &n.qname);
        let lookup = async {
            match beside {
                Some(task) => task.await.ok().flatten(),
                None => (self
                    .lookup_wire_with(other_name, other_type, key.qclass(), do_bit, cd)
                    .await)
                    .ok(),
            }
        };
        let other = tokio::time::timeout(deadline, lookup).await.ok().flatten();
        if let Some(need) = need {
            // Without the A (or PTR) answer, the upstream's answer as it is,
            // not kept: the next answer may have it.
            let Some(other) = other else {
                return View::plain(upstream);
            };
            let now = Instant::now();
            let mut cache = lock(&self.cache);
            let other_age = need_keys(key, &need)
                .iter()
                .find_map(|k| {
                    let (e, a) = cache.peek_aged(k, now)?;
                    Arc::ptr_eq(&e.reply, &other).then_some(age_secs(a))
                })
                .unwrap_or(0);
            let view = synthesized_view(key, upstream, age, &other, other_age, &env, now);
            keep(&mut cache, key, upstream, stamp, &view, now);
            return view;
        }
        let ctx = &env.ctx;
        let outcome = match &other {
            Some(o) => rewrite::rewrite(upstream, key.qtype(), key.do_bit(), ctx, Other::Reply(o)),
            None => rewrite::rewrite(upstream, key.qtype(), key.do_bit(), ctx, Other::Failed),
        };
        let view = into_view(outcome, upstream, key);
        // A view made without the other answer is not kept: the next
        // answer may have it.
        if other.is_some() {
            keep(
                &mut lock(&self.cache),
                key,
                upstream,
                stamp,
                &view,
                Instant::now(),
            );
        }
        view
    }

    /// [`Shared::view`] of a stale answer (RFC 8767), served because the
    /// upstreams fail. DNS64 synthesizes it from the A (or PTR) answer in
    /// the cache, fresh or else stale itself (TTLs `stale_ttl`), and never
    /// looks it up: a lookup now would keep the client waiting past the
    /// client response timer for an upstream that is failing.
    pub(super) async fn stale_view(
        self: &Arc<Self>,
        key: &Key,
        stale: &Arc<Reply>,
        settings: &Settings,
        stale_ttl: u32,
    ) -> View {
        let verdicts = self.verdicts.load_full();
        let prefixes = dns64_prefixes(&verdicts, settings);
        let Some(need) = dns64::need(key.qname(), key.qtype(), key.do_bit(), stale, prefixes)
        else {
            return self.view(key, stale, 0, settings, None).await;
        };
        let env = Env::new(&verdicts, settings, Stamp::new(&verdicts, settings));
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        if let Some(view) = view_from_cache(&mut cache, key, stale, 0, &env, now) {
            return view;
        }
        let other = need_keys(key, &need).iter().find_map(|k| {
            let (e, _) = cache.get_stale(k, now, settings.serve_stale)?;
            Some(e.reply.stale(stale_ttl))
        });
        match other {
            Some(other) => synthesized_view(key, stale, 0, &other, 0, &env, now),
            None => View::plain(stale),
        }
    }

    /// RFC 6147 §5.1.2: when the upstreams failed to answer a client's AAAA
    /// query, DNS64 (while active) answers from the A records as it does
    /// for an answer without AAAA; `None` when it does not apply or there
    /// is nothing to synthesize from (then the client gets SERVFAIL).
    pub(super) async fn dns64_after_failure(
        self: &Arc<Self>,
        key: &Key,
        packet: &[u8],
        settings: &Settings,
        beside: Option<tokio::task::JoinHandle<Option<Arc<Reply>>>>,
    ) -> Option<View> {
        if !dns64::answers_failures(key.qtype())
            || dns64_prefixes(&self.verdicts.load(), settings).is_empty()
        {
            return None;
        }
        // The failure as a reply: SERVFAIL to the query, no records.
        let query = wire::Query::parse(packet).ok()?;
        let mut out = Vec::new();
        wire::error_reply(&query.shape(None), 0, wire::rcode::SERVFAIL, &mut out);
        let failed = Arc::new(Reply::parse(&out).ok()?);
        let view = self.view(key, &failed, 0, settings, beside).await;
        view.synthesized.then_some(view)
    }
}
