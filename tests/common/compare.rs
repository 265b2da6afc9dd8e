//! Field-by-field comparison of the reply a client gets through getapr with
//! the reply it gets from the upstream directly.
//!
//! Equal: QR, opcode, AA, TC, RD, AD, CD, the full rcode (header + EDNS
//! high bits), the question (name compared byte for byte, so case counts),
//! and every record of every section in order: owner name (case-insensitive:
//! an owner name is often a compression pointer to the question, whose case
//! is the client's), type, class and RDATA. The EDNS OPT record: present in
//! both or in neither; version, DO bit, the other flag bits and every option
//! equal.
//!
//! Allowed to differ: the ID (getapr uses a fresh one upstream and restores
//! the client's; tests check it separately), RA (getapr sets it; the
//! authoritative upstream does not), TTLs as long as getapr's are not higher
//! (a cache serves decremented TTLs), and the EDNS UDP payload size (getapr
//! advertises its own buffer, RFC 6891 §6.2.5).

use hickory_proto::op::Message;
use hickory_proto::rr::Record;

/// Panics with every difference and both messages when `via` (through
/// getapr) does not match `direct` (from the upstream itself).
pub fn compare(direct: &Message, via: &Message) {
    let diffs = differences(direct, via);
    assert!(
        diffs.is_empty(),
        "reply through getapr differs from the upstream's:\n  - {}\n--- direct ---\n{direct}--- via getapr ---\n{via}",
        diffs.join("\n  - ")
    );
}

/// Every way `via` differs from `direct` beyond what is allowed (see the
/// module doc); empty when they match.
pub fn differences(direct: &Message, via: &Message) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, d: String, v: String| {
        if d != v {
            diffs.push(format!("{what}: direct {d}, via {v}"));
        }
    };
    let (d, v) = (&direct.metadata, &via.metadata);
    check(
        "QR",
        format!("{:?}", d.message_type),
        format!("{:?}", v.message_type),
    );
    check(
        "opcode",
        format!("{:?}", d.op_code),
        format!("{:?}", v.op_code),
    );
    check(
        "rcode",
        format!("{:?}", d.response_code),
        format!("{:?}", v.response_code),
    );
    check(
        "AA",
        d.authoritative.to_string(),
        v.authoritative.to_string(),
    );
    check("TC", d.truncation.to_string(), v.truncation.to_string());
    check(
        "RD",
        d.recursion_desired.to_string(),
        v.recursion_desired.to_string(),
    );
    check(
        "AD",
        d.authentic_data.to_string(),
        v.authentic_data.to_string(),
    );
    check(
        "CD",
        d.checking_disabled.to_string(),
        v.checking_disabled.to_string(),
    );

    check(
        "question count",
        direct.queries.len().to_string(),
        via.queries.len().to_string(),
    );
    for (i, (dq, vq)) in direct.queries.iter().zip(&via.queries).enumerate() {
        check(
            &format!("question {i} name"),
            dq.name().to_ascii(),
            vq.name().to_ascii(),
        );
        check(
            &format!("question {i} type"),
            dq.query_type().to_string(),
            vq.query_type().to_string(),
        );
        check(
            &format!("question {i} class"),
            dq.query_class().to_string(),
            vq.query_class().to_string(),
        );
    }

    for (section, d, v) in [
        ("answer", &direct.answers, &via.answers),
        ("authority", &direct.authorities, &via.authorities),
        ("additional", &direct.additionals, &via.additionals),
    ] {
        section_differences(section, d, v, &mut diffs);
    }

    match (&direct.edns, &via.edns) {
        (None, None) => {}
        (Some(_), None) => diffs.push("EDNS: direct has an OPT record, via has none".into()),
        (None, Some(_)) => diffs.push("EDNS: via has an OPT record, direct has none".into()),
        (Some(d), Some(v)) => {
            if d.version() != v.version() {
                diffs.push(format!(
                    "EDNS version: direct {}, via {}",
                    d.version(),
                    v.version()
                ));
            }
            if d.flags() != v.flags() {
                diffs.push(format!(
                    "EDNS flags: direct {:?}, via {:?}",
                    d.flags(),
                    v.flags()
                ));
            }
            if d.rcode_high() != v.rcode_high() {
                diffs.push(format!(
                    "EDNS extended rcode: direct {}, via {}",
                    d.rcode_high(),
                    v.rcode_high()
                ));
            }
            if d.options() != v.options() {
                diffs.push(format!(
                    "EDNS options: direct {:?}, via {:?}",
                    d.options(),
                    v.options()
                ));
            }
        }
    }
    diffs
}

fn section_differences(section: &str, direct: &[Record], via: &[Record], diffs: &mut Vec<String>) {
    if direct.len() != via.len() {
        diffs.push(format!(
            "{section} section: direct has {} records, via {}",
            direct.len(),
            via.len()
        ));
    }
    for (i, (d, v)) in direct.iter().zip(via).enumerate() {
        let same = d.name == v.name
            && d.record_type() == v.record_type()
            && d.dns_class == v.dns_class
            && d.data == v.data;
        if !same {
            diffs.push(format!("{section} record {i}: direct {d}, via {v}"));
        } else if v.ttl > d.ttl {
            diffs.push(format!(
                "{section} record {i} TTL: via {} is higher than direct {}",
                v.ttl, d.ttl
            ));
        }
    }
}
