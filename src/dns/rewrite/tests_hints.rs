//! Unit tests of the SVCB and HTTPS hints: ordered and filtered like
//! addresses within one record, a mandatory hint never emptied nor counted
//! as removed, signed hints left alone.

use hickory_proto::rr::rdata::svcb::{IpHint, Mandatory, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, HTTPS, SVCB};
use hickory_proto::rr::{RData, Record as HRecord};

use super::tests::{ctx, filtered, hmsg, name, reply, rrsig, verdicts, with_destination};
use super::*;
use crate::dns::wire;
use crate::probe::verdicts::State;
use crate::testutil::ip;

fn https(owner: &str, params: Vec<(SvcParamKey, SvcParamValue)>) -> HRecord {
    let svcb = SVCB::new(1, name("."), params);
    HRecord::from_rdata(name(owner), 300, RData::HTTPS(HTTPS(svcb)))
}

fn v4hint(list: &[&str]) -> (SvcParamKey, SvcParamValue) {
    let hint = list.iter().map(|s| A(s.parse().unwrap())).collect();
    (SvcParamKey::Ipv4Hint, SvcParamValue::Ipv4Hint(IpHint(hint)))
}

fn v6hint(list: &[&str]) -> (SvcParamKey, SvcParamValue) {
    let hint = list.iter().map(|s| AAAA(s.parse().unwrap())).collect();
    (SvcParamKey::Ipv6Hint, SvcParamValue::Ipv6Hint(IpHint(hint)))
}

#[test]
fn https_hints_are_ordered_and_filtered_like_addresses() {
    let v = verdicts(State::Ok, State::Ok);
    let v = with_destination(v, "203.0.113.2", State::Ok, Some(5));
    let v = with_destination(v, "203.0.113.3", State::Failed, None);
    let owner = "svc.example.com.";
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                v4hint(&["203.0.113.1", "203.0.113.2"]),
                v6hint(&["2001:db8:ffff::1"]),
            ],
        )],
    );
    let Rewritten::Reordered(out) = rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked)
    else {
        panic!("reordered")
    };
    assert_eq!(
        out.hints(),
        [
            (wire::IPV4HINT, ip("203.0.113.2")),
            (wire::IPV4HINT, ip("203.0.113.1")),
            (wire::IPV6HINT, ip("2001:db8:ffff::1"))
        ]
    );
    // A dead address goes; a hint left empty goes; the record stays.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![v4hint(&["203.0.113.3"]), v6hint(&["2001:db8:ffff::1"])],
        )],
    );
    let (out, removed, nodata, _) =
        filtered(rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked));
    assert_eq!((removed, nodata), (1, false));
    assert_eq!(out.hints(), [(wire::IPV6HINT, ip("2001:db8:ffff::1"))]);
    assert_eq!(hmsg(&out).answers.len(), 1);
    // When no hint address of the record can work, all are kept.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(owner, vec![v4hint(&["203.0.113.3"])])],
    );
    assert_eq!(
        rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
    // A mandatory hint is never emptied.
    let mandatory = (
        SvcParamKey::Mandatory,
        SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Ipv4Hint])),
    );
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                mandatory,
                v4hint(&["203.0.113.3"]),
                v6hint(&["2001:db8:ffff::1"]),
            ],
        )],
    );
    let kept = match rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked) {
        Rewritten::Same => r.hints(),
        Rewritten::Filtered { reply, .. } | Rewritten::Reordered(reply) => reply.hints(),
        Rewritten::NeedOther => unreachable!(),
    };
    assert!(
        kept.contains(&(wire::IPV4HINT, ip("203.0.113.3"))),
        "{kept:?}"
    );
    // Signed, DO: hints untouched even when they could be ordered.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![
            https(owner, vec![v4hint(&["203.0.113.1", "203.0.113.2"])]),
            rrsig(owner, rtype::HTTPS),
        ],
    );
    assert_eq!(
        rewrite(&r, rtype::HTTPS, true, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
}

#[test]
fn a_mandatory_hint_kept_whole_is_not_counted_as_removed() {
    let v = verdicts(State::Ok, State::Ok);
    let v = with_destination(v, "203.0.113.3", State::Failed, None);
    let v = with_destination(v, "2001:db8:ffff::3", State::Failed, None);
    let owner = "svc.example.com.";
    let mandatory = || {
        (
            SvcParamKey::Mandatory,
            SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Ipv4Hint])),
        )
    };
    // The mandatory ipv4hint keeps its only address, dead as it is:
    // nothing goes, so nothing is reported.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                mandatory(),
                v4hint(&["203.0.113.3"]),
                v6hint(&["2001:db8:ffff::1"]),
            ],
        )],
    );
    let o = rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked);
    assert!(
        !matches!(o, Rewritten::Filtered { .. }),
        "nothing was removed: {o:?}"
    );
    // A dead IPv6 hint address beside it does go: the count and the EDE
    // text name it alone.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                mandatory(),
                v4hint(&["203.0.113.3"]),
                v6hint(&["2001:db8:ffff::1", "2001:db8:ffff::3"]),
            ],
        )],
    );
    let (out, removed, nodata, why) =
        filtered(rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked));
    assert_eq!(
        out.hints(),
        [
            (wire::IPV4HINT, ip("203.0.113.3")),
            (wire::IPV6HINT, ip("2001:db8:ffff::1"))
        ]
    );
    assert_eq!(removed, r.hints().len() - out.hints().len());
    assert_eq!((removed, nodata), (1, false));
    assert!(why.starts_with("getapr removed 1 hint: "), "{why}");
    assert!(why.contains("2001:db8:ffff::3"), "{why}");
    assert!(!why.contains("203.0.113.3"), "{why}");
    assert_eq!(extended_errors(out.bytes()), [(EDE_FILTERED, why)]);
}
