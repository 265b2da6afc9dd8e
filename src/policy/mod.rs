//! Which (source, destination) pairs to try, best first: RFC 6724 default
//! address selection over the host's real addresses, with getapr's verdicts
//! applied, then interleaved by family as RFC 8305 §4 asks.
//!
//! Pure: no I/O, no clock. The caller hands in the destinations (from DNS),
//! the inventory [`Snapshot`](crate::inventory::Snapshot) and the published
//! [`Verdicts`](crate::probe::verdicts::Verdicts).
//!
//! # What [`pairs()`] does
//!
//! 0. On a NAT64 network without working IPv4, replaces each IPv4
//!    destination by its NAT64 address ([`nat64_destinations`]); such a
//!    pair says which IPv4 destination it reaches ([`Pair::nat64`]).
//! 1. Drops every destination whose verdict is dead (a learned destination
//!    whose state is `Failed`), and leaves every `failed` source out of the
//!    candidate sets, so a pair never has a failed source (the next best
//!    source is chosen instead, which is what a multihomed host needs when
//!    one uplink dies). `Unknown` never removes anything.
//! 2. Picks a source for each destination with the rules of RFC 6724 §5
//!    ([`select_source`]); a destination with no candidate source is dropped
//!    (§6 rule 1 would sort it last; `/pairs` only lists what can be tried).
//! 3. Orders the pairs with RFC 6724 §6 rules 1–10 and two RTT rules. A
//!    pair's RTT is the measured one of its path (source to that
//!    destination), else its source's RTT to the probe targets; unknown RTTs
//!    never decide anything.
//!    - **Faster family**, before rule 6 (precedence): of two pairs of
//!      different families, the one whose RTT exceeds the other's by more
//!      than [`Options::rtt_margin`] goes after it. Within the margin,
//!      RFC 6724 decides (a GUA IPv6 pair before an IPv4 one). Rules 1–5
//!      still come first: they reject pairs that cannot work well at all
//!      (no source, scope or label mismatch, a deprecated source).
//!    - **Lower RTT**, RFC 8305 §4, between rules 8 and 9: of two pairs that
//!      tie up to rule 8, the lower RTT wins (no margin).
//! 4. Interleaves the families ([`interleave`]), starting with the family of
//!    the best pair: the faster family when the first RTT rule decided.
//! 5. Puts the pairs to Internet destinations of a family with a path-MTU
//!    blackhole (`Verdicts::path_mtu`) after all the others, ordered and
//!    interleaved among themselves the same way: they connect, then stall.
//!
//! # Choices
//!
//! - **Rule 9 (longest matching prefix) applies to IPv6 pairs only**, as in
//!   Go's `net/addrselect.go`. RFC 6724 §6 applies it to any two
//!   destinations of one family, but for IPv4 the common prefix with a
//!   private source says nothing about distance (in Go, a 10/8 source
//!   made every 23/8 destination "closer"), and it would undo DNS
//!   round-robin among A records. glibc limits it to IPv4 destinations inside
//!   the source's subnet; musl applies it to IPv4 too.
//! - **CommonPrefixLen** (§2.2) stops at the end of the source's prefix: at
//!   64 bits for IPv6 (the interface identifier is the other 64, RFC 4291
//!   §2.5.1; a DHCPv6 /128 would otherwise count its interface id) and at
//!   the source's prefix length for IPv4.
//! - **Rule 4 (home addresses)** never applies: getapr has no Mobile IPv6.
//! - **Rule 5 and 5.5** need the route to the destination, which the
//!   inventory only knows roughly ([`Route::to`]): a destination inside a
//!   source's subnet leaves by that interface; anything else by the first
//!   default gateway of its family. A source counts as "assigned by the next
//!   hop" (rule 5.5) when it is on the gateway's interface and the gateway is
//!   inside its subnet; with a link-local IPv6 gateway that is never known,
//!   so the rule ties.
//! - **Candidate sets** (§4): same family as the destination (an IPv4-mapped
//!   destination counts as IPv4); a link-local source (fe80::/10,
//!   169.254/16) only for a destination of link-local scope; for such a
//!   destination, only sources on its interface when the interface is known.
//! - **Sorting** uses a stable merge sort of our own, not `slice::sort_by`:
//!   the RTT rules and rule 9 compare only some pairs, so the order is not
//!   total, and the standard sorts may panic on such a comparator.
//! - **The faster-family rule compares pairs, not family averages**: the
//!   RTTs are per path when known, so the best pair of each family meets
//!   the best of the other. The margin keeps jitter and the 20 % the
//!   published RTTs may lag (the generation rule) from flipping the order.
//!   A pair without an RTT ties with every pair of the other family, so
//!   while a family is only partly measured (a path measured, its source
//!   not yet) the order is not total and an unmeasured pair may land after
//!   the other family's faster pairs; that lasts until the source's first
//!   probe round gives it an RTT.

use std::cmp::Ordering;

mod destination;
mod pairs;
mod source;
mod table;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_nat64;
#[cfg(test)]
mod tests_pairs;

pub use destination::sort_destinations;
pub use pairs::{
    DEFAULT_RTT_MARGIN, Options, Pair, RttLead, interleave, nat64_destinations, pairs, ranked_pairs,
};
pub use source::{Route, select_source};
pub use table::{PolicyTable, Table, scope};

/// `Less` when `a` holds and `b` does not: "prefer the one that has it".
/// The shape of most rules of §5 and §6.
fn prefer(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}
