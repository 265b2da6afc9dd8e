//! The probe families: probes sent and failed per source address, rounds
//! started before their interval by trigger, and applications' connects
//! seen stuck in SYN-SENT, handed to the probe driver.

use std::net::IpAddr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// One source address of the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SourceLabels {
    source: String,
}

/// Why a round started early (`probe::engine::Trigger::as_str`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TriggerLabels {
    trigger: &'static str,
}

/// An address family, `ipv4` or `ipv6`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct FamilyLabels {
    family: &'static str,
}

/// The triggers of early rounds; every series exists from the start, so
/// `rate()` sees the first one.
const TRIGGERS: [&str; 4] = ["miss", "syn_sent", "gateway", "path_mtu"];

/// The probe families, handed to the probe driver.
#[derive(Debug, Clone)]
pub struct Probes {
    pub(super) sent: Family<SourceLabels, Counter>,
    pub(super) failed: Family<SourceLabels, Counter>,
    pub(super) early_rounds: Family<TriggerLabels, Counter>,
    pub(super) stuck_connects: Family<FamilyLabels, Counter>,
}

impl Probes {
    pub(super) fn new() -> Probes {
        let early_rounds = Family::<TriggerLabels, Counter>::default();
        for trigger in TRIGGERS {
            let _ = early_rounds.get_or_create(&TriggerLabels { trigger });
        }
        let stuck_connects = Family::<FamilyLabels, Counter>::default();
        for family in ["ipv4", "ipv6"] {
            let _ = stuck_connects.get_or_create(&FamilyLabels { family });
        }
        Probes {
            sent: Family::default(),
            failed: Family::default(),
            early_rounds,
            stuck_connects,
        }
    }

    pub fn sent(&self, source: IpAddr) {
        self.sent.get_or_create(&source_labels(source)).inc();
    }

    pub fn failed(&self, source: IpAddr) {
        self.failed.get_or_create(&source_labels(source)).inc();
    }

    /// A source's round started before its interval; `trigger` is one of
    /// `miss`, `syn_sent`, `gateway`, `path_mtu` (anything else is counted as is).
    pub fn early_round(&self, trigger: &'static str) {
        self.early_rounds
            .get_or_create(&TriggerLabels { trigger })
            .inc();
    }

    /// An application's connect to `dest` seen stuck in SYN-SENT.
    pub fn stuck_connect(&self, dest: IpAddr) {
        let family = if dest.is_ipv4() { "ipv4" } else { "ipv6" };
        self.stuck_connects
            .get_or_create(&FamilyLabels { family })
            .inc();
    }
}

fn source_labels(source: IpAddr) -> SourceLabels {
    SourceLabels {
        source: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arc_swap::ArcSwap;

    use crate::metrics::Metrics;
    use crate::probe::verdicts::Verdicts;

    #[test]
    fn early_rounds_and_stuck_connects_by_label_from_the_start() {
        let m = Metrics::new(Arc::new(ArcSwap::from_pointee(Verdicts::default())));
        let text = m.encode();
        for line in [
            r#"getapr_probe_early_rounds_total{trigger="miss"} 0"#,
            r#"getapr_probe_early_rounds_total{trigger="syn_sent"} 0"#,
            r#"getapr_probe_early_rounds_total{trigger="gateway"} 0"#,
            r#"getapr_probe_early_rounds_total{trigger="path_mtu"} 0"#,
            r#"getapr_stuck_connects_total{family="ipv6"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        m.probes.early_round("syn_sent");
        m.probes.early_round("miss");
        m.probes.early_round("miss");
        m.probes.stuck_connect("2001:db8::1".parse().unwrap());
        let text = m.encode();
        for line in [
            r#"getapr_probe_early_rounds_total{trigger="miss"} 2"#,
            r#"getapr_probe_early_rounds_total{trigger="syn_sent"} 1"#,
            r#"getapr_stuck_connects_total{family="ipv6"} 1"#,
            r#"getapr_stuck_connects_total{family="ipv4"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
