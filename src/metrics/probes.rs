//! The probe families: probes sent and failed per source address, handed
//! to the probe driver.

use std::net::IpAddr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// One source address of the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SourceLabels {
    source: String,
}

/// The probe families, handed to the probe driver.
#[derive(Debug, Clone)]
pub struct Probes {
    pub(super) sent: Family<SourceLabels, Counter>,
    pub(super) failed: Family<SourceLabels, Counter>,
}

impl Probes {
    pub(super) fn new() -> Probes {
        Probes {
            sent: Family::default(),
            failed: Family::default(),
        }
    }

    pub fn sent(&self, source: IpAddr) {
        self.sent.get_or_create(&source_labels(source)).inc();
    }

    pub fn failed(&self, source: IpAddr) {
        self.failed.get_or_create(&source_labels(source)).inc();
    }
}

fn source_labels(source: IpAddr) -> SourceLabels {
    SourceLabels {
        source: source.to_string(),
    }
}
