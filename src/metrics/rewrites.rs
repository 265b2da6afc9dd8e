//! The labels of `getapr_answers_rewritten_total`: what the rewrite did to
//! an answer and why, as a closed set.

use prometheus_client::encoding::EncodeLabelSet;

/// What was done to an answer and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RewriteLabels {
    pub(super) action: &'static str,
    pub(super) reason: &'static str,
}

/// What the rewrite did to an answer that was sent (see
/// [`crate::dns::rewrite::Rewritten`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Addresses put in the order the verdicts give.
    Reordered,
    /// Addresses removed; the reason of the first one removed (the one the
    /// Extended DNS Error text gives first).
    Filtered(FilterReason),
}

/// Why an address was removed from an answer, as far as the `reason` label
/// tells it: the kind of reason, never the prefix or address itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterReason {
    /// Its family has no working source.
    NoSource,
    /// Every probed destination of its prefix failed.
    DeadPrefix,
    /// Probed from every source, reached from none.
    Dead,
    /// Its family drops full-size packets (a path-MTU blackhole).
    PathMtu,
}

impl Rewrite {
    /// `action` and `reason` by [`Rewrite::index`]: never the prefix or
    /// address itself, which would make a series per destination.
    pub(super) const LABELS: [(&'static str, &'static str); 5] = [
        ("reordered", "verdicts"),
        ("filtered", "no_source"),
        ("filtered", "dead_prefix"),
        ("filtered", "dead"),
        ("filtered", "path_mtu_blackhole"),
    ];

    pub(super) fn index(self) -> usize {
        match self {
            Rewrite::Reordered => 0,
            Rewrite::Filtered(FilterReason::NoSource) => 1,
            Rewrite::Filtered(FilterReason::DeadPrefix) => 2,
            Rewrite::Filtered(FilterReason::Dead) => 3,
            Rewrite::Filtered(FilterReason::PathMtu) => 4,
        }
    }
}
