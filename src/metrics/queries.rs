//! The per-answer counter table of `getapr_dns_queries_total`: rcodes and
//! qtypes by name, and a counter per pair seen, found without a lock.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Answers sent to clients, by rcode and question type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct QueryLabels {
    rcode: &'static str,
    qtype: &'static str,
}

/// `dns_queries`: the family, and its counters by (rcode, qtype) index.
#[derive(Debug)]
pub(super) struct Queries {
    pub(super) family: Family<QueryLabels, Counter>,
    /// The counters of `family` by (rcode, qtype) index, each taken from
    /// the family on first use: counting an answer is then an atomic load
    /// and an increment, where `Family::get_or_create` takes a lock and
    /// hashes the label set. Filled lazily so that only the pairs seen
    /// become series (eager filling would export 8 × 16 zeros).
    counters: Box<[[OnceLock<Counter>; QTYPES.len() + 1]; RCODES.len() + 1]>,
}

impl Queries {
    pub(super) fn new() -> Queries {
        Queries {
            family: Family::default(),
            counters: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| OnceLock::new())
            })),
        }
    }

    /// Counts `n` answers: `rcode` is the 12-bit one.
    pub(super) fn count(&self, rcode: u16, qtype: u16, n: u64) {
        let (r, q) = (rcode_index(rcode), qtype_index(qtype));
        self.counters[r][q]
            .get_or_init(|| {
                let labels = QueryLabels {
                    rcode: RCODES.get(r).map_or("other", |x| x.1),
                    qtype: QTYPES.get(q).map_or("other", |x| x.1),
                };
                self.family.get_or_create(&labels).clone()
            })
            .inc_by(n);
    }
}

/// RFC 1035 §4.1.1 and RFC 6891 §9 (BADVERS) rcodes by name; the rest
/// count as `other`.
pub(super) const RCODES: [(u16, &str); 7] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
];

/// The common qtypes by name; the rest count as `other`, so a client
/// cannot grow the label set.
pub(super) const QTYPES: [(u16, &str); 15] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (35, "NAPTR"),
    (43, "DS"),
    (48, "DNSKEY"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (255, "ANY"),
];

/// Index into [`RCODES`]; `RCODES.len()` for `other`.
pub(super) fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => usize::from(rcode),
        16 => 6,
        _ => RCODES.len(),
    }
}

/// Index into [`QTYPES`]; `QTYPES.len()` for `other`.
pub(super) fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        2 => 1,
        5 => 2,
        6 => 3,
        12 => 4,
        15 => 5,
        16 => 6,
        28 => 7,
        33 => 8,
        35 => 9,
        43 => 10,
        48 => 11,
        64 => 12,
        65 => 13,
        255 => 14,
        _ => QTYPES.len(),
    }
}
