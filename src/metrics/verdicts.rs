//! The verdict gauges: state sets of sources and families, flags and RTTs,
//! read from the published verdicts at scrape time.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::probe::verdicts::{Mtu, State, Verdicts};

/// The verdict gauges, computed from the published snapshot at scrape time.
///
/// A source's or family's state is three-valued (unknown, ok, failed), so
/// it is exported as a state set, the way node_exporter exports a systemd
/// unit's state and kube-state-metrics a pod's phase: one series per state,
/// 1 for the present one and 0 for the others. A `_up` gauge would have to
/// drop the source or invent a value for "not probed yet": absence reads
/// the same as "no such source" and breaks `absent()` alerts, and a -1
/// poisons `sum`/`avg`. With the state set, `getapr_source_state{state="ok"}`
/// is the 1/0 "up" gauge, `{state="failed"} == 1` the alert, and every
/// series keeps existing when the state moves, so nothing goes stale.
#[derive(Debug)]
pub struct VerdictGauges(pub Arc<ArcSwap<Verdicts>>);

const STATES: [State; 3] = [State::Unknown, State::Ok, State::Failed];

const MTUS: [Mtu; 3] = [Mtu::Unknown, Mtu::Ok, Mtu::Blackhole];

impl Collector for VerdictGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let v = self.0.load();

        let e = encoder.encode_descriptor(
            "verdict_generation",
            "Generation of the published verdicts; moves when a verdict changes.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(v.generation).encode(e)?;

        // Families without a sample are left out, as the registry does.
        if !v.sources.is_empty() {
            let e = encoder.encode_descriptor(
                "source_state",
                "Whether a source address reaches the Internet (a link-scoped one: its \
                 gateway); 1 for its present state.",
                None,
                MetricType::Gauge,
            )?;
            encode_sources(&v, e)?;
        }

        let mut e = encoder.encode_descriptor(
            "family_state",
            "Whether an address family has a working source; 1 for its present state.",
            None,
            MetricType::Gauge,
        )?;
        for (family, present) in [("ipv4", v.families.ipv4), ("ipv6", v.families.ipv6)] {
            for state in STATES {
                let labels = [("family", family), ("state", state.as_str())];
                ConstGauge::new(i64::from(present == state)).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "path_mtu_state",
            "Whether full-size packets get through an address family's path (a blackhole: \
             small probes answered, large ones not); 1 for its present state.",
            None,
            MetricType::Gauge,
        )?;
        for (family, present) in [("ipv4", v.path_mtu.ipv4), ("ipv6", v.path_mtu.ipv6)] {
            for state in MTUS {
                let labels = [("family", family), ("state", state.as_str())];
                ConstGauge::new(i64::from(present == state)).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "flag",
            "The getapr flags of /status, 1 when set.",
            None,
            MetricType::Gauge,
        )?;
        for (name, set) in v.flags.named() {
            ConstGauge::new(i64::from(set)).encode(e.encode_family(&[("name", name)])?)?;
        }

        if v.sources.iter().any(|s| s.rtt.is_some()) {
            let unit = Unit::Seconds;
            let mut e = encoder.encode_descriptor(
                "source_rtt",
                "Smoothed RTT of a source's verdict probes, when measured.",
                Some(&unit),
                MetricType::Gauge,
            )?;
            for s in &v.sources {
                if let Some(rtt) = s.rtt {
                    let source = s.address.to_string();
                    let labels = [("source", source.as_str())];
                    ConstGauge::new(rtt.as_secs_f64()).encode(e.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// `source_state`: the state set of every source.
fn encode_sources(v: &Verdicts, mut e: MetricEncoder<'_>) -> fmt::Result {
    for s in &v.sources {
        let source = s.address.to_string();
        for state in STATES {
            let labels = [
                ("source", source.as_str()),
                ("interface", s.interface.as_str()),
                ("class", s.class.as_str()),
                ("state", state.as_str()),
            ];
            ConstGauge::new(i64::from(s.state == state)).encode(e.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
