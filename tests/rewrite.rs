//! Answers rewritten by the verdicts, through the real stub in process: verdicts published by the
//! test (the probe engine needs a network lab; `tests/rewrite_lab.rs` runs
//! the whole thing there) reach the answers, without waiting for TTLs, and
//! with nothing known the answers are the upstream's.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::auth::{DUAL, DUAL_V4, DUAL_V6, NS_NAME, V6ONLY, V6ONLY_V6};
use common::client::parse;
use common::{AuthUpstream, compare, config_toml, query, start_getapr, udp_exchange};
use getapr::daemon::Handle;
use getapr::dns::rewrite::{EDE_FILTERED, extended_errors};
use getapr::probe::verdicts::{DestinationVerdict, Families, PathVerdict, State, Verdicts};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

struct Setup {
    auth: AuthUpstream,
    getapr: SocketAddr,
    handle: Handle,
}

async fn setup(policy: &str) -> Setup {
    let auth = AuthUpstream::start().await;
    let toml = config_toml(&[auth.addr()], "").replace("filter = \"off\"", policy);
    let (handle, getapr) = start_getapr(&toml).await;
    Setup {
        auth,
        getapr,
        handle,
    }
}

impl Setup {
    /// Publishes verdicts as the probe engine would: a new generation.
    fn publish(&self, mut v: Verdicts) {
        let cell = self.handle.verdicts();
        v.generation = cell.load().generation + 1;
        cell.store(Arc::new(v));
    }

    async fn ask(&self, name: &str, qtype: RecordType) -> (Message, Vec<u8>) {
        let bytes = udp_exchange(self.getapr, &query(name, qtype).bytes()).await;
        (parse(&bytes), bytes)
    }
}

fn families(ipv4: State, ipv6: State) -> Verdicts {
    Verdicts {
        families: Families { ipv4, ipv6 },
        ..Verdicts::default()
    }
}

/// The A and AAAA addresses of `m`'s answer section, in order.
fn addresses(m: &Message) -> Vec<IpAddr> {
    common::labdns::addresses(&m.answers)
}

fn assert_filtered_nodata(m: &Message, raw: &[u8]) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert!(addresses(m).is_empty(), "no address left: {m}");
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "an SOA for negative caching: {m}"
    );
    let ede = extended_errors(raw);
    assert!(
        ede.iter()
            .any(|(code, text)| *code == EDE_FILTERED && !text.is_empty()),
        "EDE 17 with a text: {ede:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_known_answers_are_the_upstreams() {
    let s = setup("filter = \"auto\"").await;
    for qtype in [RecordType::A, RecordType::AAAA] {
        let q = query(DUAL, qtype);
        let direct = parse(&udp_exchange(s.auth.addr(), &q.bytes()).await);
        let (via, raw) = s.ask(DUAL, qtype).await;
        compare(&direct, &via);
        assert_eq!(addresses(&direct), addresses(&via), "same order too");
        assert!(extended_errors(&raw).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_change_reaches_the_next_answer_without_waiting_for_the_ttl() {
    let s = setup("filter = \"auto\"").await;
    let (first, _) = s.ask(DUAL, RecordType::AAAA).await;
    assert_eq!(addresses(&first).len(), 3);
    let upstream_before = s.auth.total_queries();

    // IPv6 breaks: the cached AAAA answer is filtered at once; the daemon
    // asks for the A answer itself to know the name keeps an address.
    s.publish(families(State::Ok, State::Failed));
    let (m, raw) = s.ask(DUAL, RecordType::AAAA).await;
    assert_filtered_nodata(&m, &raw);
    assert_eq!(
        s.auth.total_queries(),
        upstream_before + 1,
        "one upstream query: the A answer; the AAAA came from the cache"
    );
    // The A answer is untouched, and from the cache now.
    let (a, _) = s.ask(DUAL, RecordType::A).await;
    assert_eq!(addresses(&a).len(), 3, "{a}");
    assert_eq!(s.auth.total_queries(), upstream_before + 1);
    // An IPv6-only name keeps its AAAA: no A record can work instead.
    let (v6, _) = s.ask(V6ONLY, RecordType::AAAA).await;
    assert_eq!(addresses(&v6), [IpAddr::V6(V6ONLY_V6)], "{v6}");

    // IPv6 comes back: the AAAA records are back on the next answer.
    s.publish(families(State::Ok, State::Ok));
    let (back, raw) = s.ask(DUAL, RecordType::AAAA).await;
    assert_eq!(addresses(&back).len(), 3, "{back}");
    assert!(extended_errors(&raw).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_that_will_be_filtered_asks_the_other_family_beside_it() {
    let s = setup("filter = \"auto\"").await;
    s.publish(families(State::Ok, State::Failed));
    let started = Instant::now();
    let (m, raw) = s.ask(DUAL, RecordType::AAAA).await;
    let took = started.elapsed();
    assert_filtered_nodata(&m, &raw);
    assert_eq!(s.auth.total_queries(), 2, "AAAA and, beside it, A");
    // Both came from the cache afterwards.
    let (a, _) = s.ask(DUAL, RecordType::A).await;
    assert_eq!(addresses(&a).len(), 3);
    s.ask(DUAL, RecordType::AAAA).await;
    assert_eq!(s.auth.total_queries(), 2);
    eprintln!("filtered AAAA miss answered in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_off_only_reorders() {
    let s = setup("filter = \"off\"").await;
    // The last A record is the one that answered; the first is dead.
    let path = |state, rtt| PathVerdict {
        source: "192.0.2.100".parse().unwrap(),
        scope_id: 0,
        state,
        rtt,
    };
    let mut v = families(State::Ok, State::Ok);
    v.destinations = vec![
        DestinationVerdict {
            address: IpAddr::V4(DUAL_V4[0]),
            learned: true,
            state: State::Failed,
            paths: vec![path(State::Failed, None)],
        },
        DestinationVerdict {
            address: IpAddr::V4(DUAL_V4[2]),
            learned: true,
            state: State::Ok,
            paths: vec![path(State::Ok, Some(Duration::from_millis(3)))],
        },
    ];
    s.publish(v.clone());
    let (m, raw) = s.ask(DUAL, RecordType::A).await;
    let want: Vec<IpAddr> = [DUAL_V4[2], DUAL_V4[1], DUAL_V4[0]]
        .into_iter()
        .map(IpAddr::V4)
        .collect();
    assert_eq!(
        addresses(&m),
        want,
        "working first, dead last, none removed"
    );
    assert!(extended_errors(&raw).is_empty());

    // The same verdicts with filtering on: the dead one goes.
    let toml = config_toml(&[s.auth.addr()], "").replace("filter = \"off\"", "filter = \"auto\"");
    s.handle
        .reload(common::daemon::parse(&toml))
        .await
        .expect("reload");
    let (m, raw) = s.ask(DUAL, RecordType::A).await;
    assert_eq!(addresses(&m), want[..2], "{m}");
    assert_eq!(extended_errors(&raw)[0].0, EDE_FILTERED);
    // The AAAA answer is not concerned.
    let (m, _) = s.ask(DUAL, RecordType::AAAA).await;
    assert_eq!(addresses(&m), DUAL_V6.map(IpAddr::V6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_address_of_a_name_can_work_nothing_is_removed() {
    let s = setup("filter = \"auto\"").await;
    s.publish(families(State::Failed, State::Failed));
    for qtype in [RecordType::A, RecordType::AAAA] {
        let (m, raw) = s.ask(DUAL, qtype).await;
        assert_eq!(addresses(&m).len(), 3, "{m}");
        assert!(extended_errors(&raw).is_empty());
    }
    // A name with only an A record (the zone's NS host) keeps it too.
    let (m, _) = s.ask(NS_NAME, RecordType::A).await;
    assert_eq!(addresses(&m).len(), 1, "{m}");
}
