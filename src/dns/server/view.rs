//! What the verdicts make of an upstream reply: the rewritten view, kept
//! in the cache entry per verdict generation and `[policy]`, and the lookup
//! of the name's other family when the rewrite needs its answer.

use crate::sync::lock;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::config::Filter;
use crate::dns::cache::{Cache, Key};
use crate::dns::rewrite::{self, Context, Other};
use crate::dns::wire::{self, Reply};
use crate::metrics::Rewrite;
use crate::probe::verdicts::{State, Verdicts};

/// How long an answer whose every address would be filtered waits for the
/// name's other family (module doc of [`rewrite`]); past it the answer goes
/// out unfiltered. The other query usually runs beside the first one (see
/// [`Shared::other_family_beside`]), so this bounds a slow upstream, not the
/// usual case.
const OTHER_FAMILY_DEADLINE: Duration = Duration::from_millis(500);

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
}

/// What a rewritten view depends on: the verdicts and the `[policy]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    generation: u64,
    filter: Filter,
    break_dnssec: bool,
}

impl Stamp {
    pub(super) fn new(verdicts: &Verdicts, policy: &crate::config::Policy) -> Stamp {
        Stamp {
            generation: verdicts.generation,
            filter: policy.filter,
            break_dnssec: policy.break_dnssec,
        }
    }
}

pub(super) fn context<'a>(verdicts: &'a Verdicts, policy: &crate::config::Policy) -> Context<'a> {
    Context {
        verdicts,
        filter: policy.filter,
        break_dnssec: policy.break_dnssec,
    }
}

/// The view of `upstream` for `stamp`, from the entry when it is current,
/// else computed with the other family's answer from the cache and kept.
/// `None` when the rewrite needs the other family and the cache lacks it.
pub(super) fn view_from_cache(
    cache: &mut Cache<Cached>,
    key: &Key,
    upstream: &Arc<Reply>,
    ctx: &Context<'_>,
    stamp: Stamp,
    now: Instant,
) -> Option<View> {
    if let Some(entry) = cache.peek_mut(key, now)
        && Arc::ptr_eq(&entry.reply, upstream)
        && let Some((s, view)) = &entry.view
        && *s == stamp
    {
        return Some(view.clone());
    }
    let (qtype, do_bit) = (key.qtype(), key.do_bit());
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
    if let Some(entry) = cache.peek_mut(key, now)
        && Arc::ptr_eq(&entry.reply, upstream)
    {
        entry.view = Some((stamp, view.clone()));
    }
    Some(view)
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
    View { reply, rewrite }
}

impl Shared {
    /// When the verdicts already say the asked family cannot work, the
    /// answer is likely to be filtered, which needs the other family's
    /// answer: ask for it at once, beside the client's query, so the
    /// filtering costs no extra round trip.
    pub(super) fn other_family_beside(
        self: &Arc<Self>,
        key: &Key,
        policy: &crate::config::Policy,
    ) -> Option<tokio::task::JoinHandle<Option<Arc<Reply>>>> {
        let other = rewrite::other_type(key.qtype())?;
        let verdicts = self.verdicts.load();
        let family = if key.qtype() == wire::rtype::A {
            verdicts.families.ipv4
        } else {
            verdicts.families.ipv6
        };
        if policy.filter != Filter::Auto || family != State::Failed || rewrite::exempt(key.qname())
        {
            return None;
        }
        let shared = Arc::clone(self);
        let name = key.qname().to_vec();
        let qclass = key.qclass();
        Some(tokio::spawn(async move {
            shared.lookup_wire(&name, other, qclass).await.ok()
        }))
    }

    /// The reply to send for `upstream` under the present verdicts: the
    /// cached view when it is current, else computed (asking for the other
    /// family when the rewrite needs it) and kept in the cache entry.
    pub(super) async fn view(
        self: &Arc<Self>,
        key: &Key,
        upstream: &Arc<Reply>,
        policy: &crate::config::Policy,
        beside: Option<tokio::task::JoinHandle<Option<Arc<Reply>>>>,
    ) -> View {
        let verdicts = self.verdicts.load_full();
        let stamp = Stamp::new(&verdicts, policy);
        let ctx = context(&verdicts, policy);
        if let Some(view) = view_from_cache(
            &mut lock(&self.cache),
            key,
            upstream,
            &ctx,
            stamp,
            Instant::now(),
        ) {
            return view;
        }
        let Some(other_type) = rewrite::other_type(key.qtype()) else {
            return View {
                reply: Arc::clone(upstream),
                rewrite: None,
            };
        };
        let lookup = async {
            match beside {
                Some(task) => task.await.ok().flatten(),
                None => (self
                    .lookup_wire(key.qname(), other_type, key.qclass())
                    .await)
                    .ok(),
            }
        };
        let other = tokio::time::timeout(OTHER_FAMILY_DEADLINE, lookup)
            .await
            .ok()
            .flatten();
        let outcome = match &other {
            Some(o) => rewrite::rewrite(upstream, key.qtype(), key.do_bit(), &ctx, Other::Reply(o)),
            None => rewrite::rewrite(upstream, key.qtype(), key.do_bit(), &ctx, Other::Failed),
        };
        let view = into_view(outcome, upstream, key);
        // A view made without the other answer is not kept: the next
        // answer may have it.
        if other.is_some()
            && let Some(entry) = lock(&self.cache).peek_mut(key, Instant::now())
            && Arc::ptr_eq(&entry.reply, upstream)
        {
            entry.view = Some((stamp, view.clone()));
        }
        view
    }
}
