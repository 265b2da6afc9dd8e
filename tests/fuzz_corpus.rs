//! Runs the fuzz targets' entry points over the checked-in corpora, so the
//! seeds (and every crash ever found, once added) are replayed by
//! `cargo test` even where cargo-fuzz and a nightly toolchain are missing.

use std::fs;
use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn wire_corpus_replays_without_panic() {
    let seeds = corpus("wire");
    assert!(seeds.len() >= 5, "the wire corpus lost its seeds");
    for (name, data) in seeds {
        // A panic names the file through the test output.
        eprintln!("replaying {name}");
        getapr::dns::wire::exercise(&data);
    }
}

#[test]
fn rewrite_corpus_replays_without_panic() {
    let seeds = corpus("rewrite");
    assert!(seeds.len() >= 5, "the rewrite corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::dns::rewrite::exercise(&data);
    }
}

#[test]
fn api_corpus_replays_without_panic() {
    let seeds = corpus("api");
    assert!(seeds.len() >= 5, "the api corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::api::exercise(&data);
    }
}

#[test]
fn stun_corpus_replays_without_panic() {
    let seeds = corpus("stun");
    assert!(seeds.len() >= 5, "the stun corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::probe::stun::exercise(&data);
    }
}

#[test]
fn config_corpus_replays_without_panic() {
    let seeds = corpus("config");
    assert!(seeds.len() >= 5, "the config corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::config::Config::exercise(&data);
    }
}

#[test]
fn query_corpus_replays_without_panic() {
    let seeds = corpus("query");
    assert!(seeds.len() >= 5, "the query corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::dns::fuzz::query(&data);
    }
}

#[test]
fn reply_cache_corpus_replays_without_panic() {
    let seeds = corpus("reply_cache");
    assert!(seeds.len() >= 5, "the reply_cache corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::dns::fuzz::reply_cache(&data);
    }
}

/// On a paused clock, as the fuzz target runs it: the idle timeout passes
/// at once, and a connection that never ends fails instead of hanging.
#[tokio::test(start_paused = true)]
async fn tcp_framing_corpus_replays_without_panic() {
    let seeds = corpus("tcp_framing");
    assert!(seeds.len() >= 5, "the tcp_framing corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::dns::fuzz::tcp_framing(&data).await;
    }
}
