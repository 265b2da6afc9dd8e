//! Runs the fuzz targets' entry points (`getapr::fuzzing`) over the
//! checked-in corpora, so the seeds (and every crash ever found, once
//! added) are replayed by `cargo test` even where cargo-fuzz and a nightly
//! toolchain are missing.

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

/// Runs the target's entry point over every seed of its corpus, which must still
/// hold at least five; a panic names the file through the test output.
fn replay(target: &str, entry: impl Fn(&[u8])) {
    let seeds = corpus(target);
    assert!(seeds.len() >= 5, "the {target} corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        entry(&data);
    }
}

#[test]
fn wire_corpus_replays_without_panic() {
    replay("wire", getapr::fuzzing::wire);
}

#[test]
fn rewrite_corpus_replays_without_panic() {
    replay("rewrite", getapr::fuzzing::rewrite);
}

#[test]
fn api_corpus_replays_without_panic() {
    replay("api", getapr::fuzzing::api);
}

#[test]
fn stun_corpus_replays_without_panic() {
    replay("stun", getapr::fuzzing::stun);
}

#[test]
fn ndopt_corpus_replays_without_panic() {
    replay("ndopt", getapr::fuzzing::ndopt);
}

#[test]
fn config_corpus_replays_without_panic() {
    replay("config", getapr::fuzzing::config);
}

#[test]
fn query_corpus_replays_without_panic() {
    replay("query", getapr::fuzzing::query);
}

#[test]
fn reply_cache_corpus_replays_without_panic() {
    replay("reply_cache", getapr::fuzzing::reply_cache);
}

/// On a paused clock, as the fuzz target runs it: the idle timeout passes
/// at once, and a connection that never ends fails instead of hanging.
#[tokio::test(start_paused = true)]
async fn tcp_framing_corpus_replays_without_panic() {
    let seeds = corpus("tcp_framing");
    assert!(seeds.len() >= 5, "the tcp_framing corpus lost its seeds");
    for (name, data) in seeds {
        eprintln!("replaying {name}");
        getapr::fuzzing::tcp_framing(&data).await;
    }
}
