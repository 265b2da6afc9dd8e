//! The `tcp_framing` target: a DNS-over-TCP connection fed a byte stream
//! cut into chunks, over an in-memory pipe on a paused clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::scene::{offline, peer, prefill};
use crate::dns::server;
use crate::dns::wire::{HEADER_LEN, Header, Message, Query};

/// A TCP connection (`dns::server::connection`) fed a byte stream in chunks,
/// over an in-memory pipe. `data[0]`: bits 0-1 how the client ends (0, 3:
/// it closes; 1: the daemon is stopped; 2: it goes silent, and the idle
/// timeout must end the connection), bits 2-3 the pipe's buffer size;
/// `data[1..4]` the daemon, verdicts and cache as for
/// [`query`](fn@super::query) (the cache filled for every query in the
/// stream); `data[4] % 8` how many of the next bytes are chunk sizes (each
/// byte + 1, in turn; none: one write); the rest is the stream.
///
/// Run it on a current-thread runtime with a paused clock
/// (`Builder::start_paused`): the idle timeout then passes as soon as
/// nothing else can run, and a connection that never ends fails the run
/// after an hour of that clock instead of hanging it.
///
/// Every frame the daemon writes must be whole and a reply to a frame the
/// client sent; when the client closes, each query frame before the first
/// one too short for a header gets exactly one.
pub async fn tcp_framing(data: &[u8]) {
    let &[end, setup, pick, fill, sizes, ref rest @ ..] = data else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(sizes % 8).min(rest.len()));
    let sent = frames(stream).0;
    let shared = offline(setup, pick);
    for q in sent.iter().filter_map(|f| Query::parse(f).ok()) {
        prefill(&shared, &q, fill);
    }
    let buffer = [64, 512, 4096, 65536][usize::from(end >> 2 & 3)];
    let (client, daemon) = tokio::io::duplex(buffer);
    let (rd, wr) = tokio::io::split(daemon);
    let (mut from_daemon, mut to_daemon) = tokio::io::split(client);
    let stop = CancellationToken::new();
    let Some(slot) = shared.tcp_slots.admit(1, Instant::now()).slot else {
        panic!("the one slot of a fresh daemon is free");
    };
    let serve = server::connection(Arc::clone(&shared), rd, wr, peer(setup), slot, stop.clone());
    let send = async {
        let mut left = stream;
        let mut turn = sizes.iter().cycle();
        while !left.is_empty() {
            let size = turn.next().map_or(left.len(), |&s| usize::from(s) + 1);
            let (chunk, tail) = left.split_at(size.min(left.len()));
            if to_daemon.write_all(chunk).await.is_err() {
                break;
            }
            left = tail;
            // Lets the daemon read what arrived so far: a partial frame.
            tokio::task::yield_now().await;
        }
        match end & 3 {
            1 => stop.cancel(),
            2 => {}
            _ => {
                let _ = to_daemon.shutdown().await;
            }
        }
    };
    let receive = async {
        let mut got = Vec::new();
        let _ = from_daemon.read_to_end(&mut got).await;
        got
    };
    let run = async { tokio::join!(serve, send, receive).2 };
    let Ok(got) = tokio::time::timeout(Duration::from_secs(3600), run).await else {
        panic!("the connection did not end");
    };
    let (answers, trailing) = frames(&got);
    assert!(trailing.is_empty(), "a partial frame written: {trailing:?}");
    let ids = |frames: &[&[u8]]| -> Vec<u16> {
        let mut ids: Vec<u16> = frames
            .iter()
            .filter_map(|f| Header::parse(f))
            .map(|h| h.id)
            .collect();
        ids.sort_unstable();
        ids
    };
    let asked = ids(&sent);
    for a in &answers {
        let msg =
            Message::parse(a).unwrap_or_else(|e| panic!("a framed answer must parse: {e}: {a:?}"));
        assert!(msg.header.qr(), "a framed answer without QR");
        assert!(
            asked.binary_search(&msg.header.id).is_ok(),
            "an answer to an ID never sent"
        );
    }
    if end & 3 == 0 || end & 3 == 3 {
        let answerable: Vec<&[u8]> = (sent.iter())
            .take_while(|f| f.len() >= HEADER_LEN)
            .filter(|f| Header::parse(f).is_some_and(|h| !h.qr()))
            .copied()
            .collect();
        assert_eq!(ids(&answers), ids(&answerable), "every query answered once");
    }
}

/// The whole length-prefixed frames at the start of `stream`, and what
/// follows them (a partial frame).
fn frames(mut stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = stream {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some(frame) = rest.get(..len) else {
            break;
        };
        out.push(frame);
        stream = &rest[len..];
    }
    (out, stream)
}
