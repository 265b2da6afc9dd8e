//! Unit tests of the slots: the table's eviction order and costs, and the
//! guards that give a slot back.

use super::table::{Id, Table};
use super::*;

fn at(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

fn holds(table: &mut Table, id: Id) -> bool {
    table.entry_mut(id).is_some()
}

#[test]
fn below_the_cap_nobody_is_evicted() {
    let t0 = Instant::now();
    let mut table = Table::default();
    for ms in 0..3 {
        assert!(table.admit(3, at(t0, ms)).unwrap().evicted.is_none());
    }
    assert_eq!(table.len, 3);
}

#[test]
fn at_the_cap_the_longest_waiting_gives_way() {
    let t0 = Instant::now();
    let mut table = Table::default();
    let slow = table.admit(3, at(t0, 0)).unwrap();
    let idle = table.admit(3, at(t0, 10)).unwrap().id;
    let fresh = table.admit(3, at(t0, 20)).unwrap().id;
    // `idle` was answered and waits for its next message since 30 ms:
    // `slow`, waiting since 0 ms, goes first.
    assert!(table.begin(idle, false));
    table.end(idle, at(t0, 30));
    let new = table.admit(3, at(t0, 40)).unwrap();
    let (token, why) = new.evicted.expect("one gives way");
    token.cancel();
    assert_eq!(why, Waiting::Idle);
    assert!(slow.evict.is_cancelled(), "the evicted one is `slow`");
    assert!(!holds(&mut table, slow.id));
    // The evicted one can no longer become busy.
    assert!(!table.begin(slow.id, false));
    // Next: `fresh` (20 ms), then `idle` (30 ms), then `new` (40 ms).
    for gone in [fresh, idle, new.id] {
        assert!(table.admit(3, at(t0, 50)).unwrap().evicted.is_some());
        assert!(!holds(&mut table, gone), "{gone:?} should be evicted");
    }
}

#[test]
fn busy_connections_are_never_evicted() {
    let t0 = Instant::now();
    let mut table = Table::default();
    let a = table.admit(2, at(t0, 0)).unwrap().id;
    let b = table.admit(2, at(t0, 1)).unwrap().id;
    assert!(table.begin(a, false));
    // Only `b` waits: it goes, though `a` is older.
    let c = table.admit(2, at(t0, 2)).unwrap();
    assert!(c.evicted.is_some());
    assert!(!holds(&mut table, b) && holds(&mut table, a));
    assert!(table.begin(c.id, false));
    // Both busy: refused, and nobody is evicted.
    assert!(table.admit(2, at(t0, 3)).is_none());
    assert_eq!(table.len, 2);
    // A slot comes back when a connection ends.
    table.remove(a);
    assert!(table.admit(2, at(t0, 4)).unwrap().evicted.is_none());
}

#[test]
fn busy_counts_every_guard() {
    let t0 = Instant::now();
    let mut table = Table::default();
    let a = table.admit(1, at(t0, 0)).unwrap().id;
    // Two queries in flight; one answered: still busy.
    assert!(table.begin(a, false) && table.begin(a, false));
    table.end(a, at(t0, 5));
    assert!(table.admit(1, at(t0, 6)).is_none(), "one is still busy");
    table.end(a, at(t0, 7));
    let (_, why) = table.admit(1, at(t0, 8)).unwrap().evicted.unwrap();
    assert_eq!(why, Waiting::Idle);
}

#[test]
fn stalled_connections_give_way_before_idle_ones() {
    let t0 = Instant::now();
    let stalled = STALLED.as_millis() as u64;
    let mut table = Table::default();
    let idle = table.admit(3, at(t0, 0)).unwrap().id;
    let slow = table.admit(3, at(t0, 100)).unwrap().id;
    let trickling = table.admit(3, at(t0, 200)).unwrap().id;
    // `slow` began a message at 300 ms, `trickling` at 400 ms and sends
    // a byte every 100 ms after: the later parts do not move its time.
    table.partial(slow, at(t0, 300));
    for ms in (400..2000).step_by(100) {
        table.partial(trickling, at(t0, ms));
    }
    // Before STALLED has passed, a part-read message is no stall: the
    // one idle since 0 ms goes first.
    let now = at(t0, 300 + stalled - 1);
    let first = table.admit(3, now).unwrap();
    assert_eq!(first.evicted.map(|e| e.1), Some(Waiting::Idle));
    assert!(!holds(&mut table, idle));
    // Then both are stalled: the one stalled longest goes, though the
    // other sent its last byte earlier, and before the idle newcomer.
    let now = at(t0, 400 + stalled);
    let second = table.admit(3, now).unwrap();
    assert_eq!(second.evicted.map(|e| e.1), Some(Waiting::Stalled));
    assert!(!holds(&mut table, slow) && holds(&mut table, trickling));
    let third = table.admit(3, now).unwrap();
    assert_eq!(third.evicted.map(|e| e.1), Some(Waiting::Stalled));
    assert!(!holds(&mut table, trickling));
    assert!(holds(&mut table, first.id) && holds(&mut table, second.id));
}

#[test]
fn a_whole_message_ends_the_stall_and_counts_as_work() {
    let t0 = Instant::now();
    let stalled = STALLED.as_millis() as u64;
    let mut table = Table::default();
    let a = table.admit(2, at(t0, 0)).unwrap().id;
    let b = table.admit(2, at(t0, 10)).unwrap().id;
    table.partial(a, at(t0, 20));
    // `a`'s message came whole and was answered at 30 ms, after `b`
    // arrived: `b` waits longer, so it goes.
    assert!(table.begin(a, true));
    table.end(a, at(t0, 30));
    let c = table.admit(2, at(t0, 30 + stalled)).unwrap();
    assert_eq!(c.evicted.map(|e| e.1), Some(Waiting::Idle));
    assert!(holds(&mut table, a) && !holds(&mut table, b));
    // A message part-read while another query is in flight: busy, then
    // stalled from the message's first byte once the answer is out,
    // and then evicted ahead of the idle one.
    let t1 = at(t0, 40 + stalled);
    table.partial(a, at(t1, 0));
    assert!(table.begin(a, false));
    assert!(table.admit(2, at(t1, 10)).unwrap().evicted.is_some());
    assert!(holds(&mut table, a), "busy, so not evicted");
    table.end(a, at(t1, 20 + stalled));
    let (_, why) = table
        .admit(2, at(t1, 20 + stalled))
        .unwrap()
        .evicted
        .unwrap();
    assert_eq!(why, Waiting::Stalled);
    assert!(!holds(&mut table, a));
}

#[test]
fn the_cap_is_read_on_each_admission() {
    let t0 = Instant::now();
    let mut table = Table::default();
    for ms in 0..3 {
        assert!(table.admit(3, at(t0, ms)).unwrap().evicted.is_none());
    }
    // Raised: room again. Lowered below the count: each admission
    // evicts one, so the count stays until connections end.
    assert!(table.admit(4, at(t0, 3)).unwrap().evicted.is_none());
    assert!(table.admit(2, at(t0, 4)).unwrap().evicted.is_some());
    assert_eq!(table.len, 4);
}

#[test]
fn positions_are_reused_and_old_ids_do_not_match() {
    let t0 = Instant::now();
    let mut table = Table::default();
    let a = table.admit(8, t0).unwrap().id;
    table.remove(a);
    let b = table.admit(8, t0).unwrap().id;
    assert_eq!(a.index, b.index, "the freed position is reused");
    assert!(!table.begin(a, false), "the old id is gone");
    table.end(a, t0);
    table.remove(a);
    assert!(holds(&mut table, b), "b is untouched by a's id");
    assert_eq!((table.len, table.entries.len()), (1, 1));
}

#[test]
fn slots_cancel_the_evicted_and_give_back_on_drop() {
    let slots = Slots::new();
    let first = slots.admit(1, Instant::now()).slot.unwrap();
    assert!(!first.asked());
    let second = slots.admit(1, Instant::now()).slot.unwrap();
    assert!(first.evict.is_cancelled());
    assert!(
        first.busy().is_none(),
        "an evicted connection stays evicted"
    );
    assert!(first.asked());
    // Dropping the evicted slot leaves the new one's place alone.
    drop(first);
    let busy = second.busy().expect("not evicted");
    let refused = slots.admit(1, Instant::now());
    assert!(refused.slot.is_none(), "the one slot is busy");
    assert!(refused.evicted.is_none());
    // Answered: waiting again, so it gives way to the next one.
    drop(busy);
    let third = slots.admit(1, Instant::now());
    assert_eq!(third.evicted, Some(Waiting::Idle));
    assert!(second.evict.is_cancelled());
    drop((second, third));
    assert_eq!(slots.lock().len, 0);
}

/// What eviction costs: a scan of every slot, at the default cap and
/// the largest. Prints the times (`-- --nocapture`; build optimized
/// for a figure that means anything).
#[test]
fn eviction_at_the_default_and_the_largest_cap() {
    for cap in [256, 65_535] {
        let t0 = Instant::now();
        let mut table = Table::default();
        for i in 0..cap {
            table.admit(cap, at(t0, i as u64)).unwrap();
        }
        let rounds = 200u32;
        let started = Instant::now();
        for _ in 0..rounds {
            assert!(table.admit(cap, at(t0, 1 << 20)).unwrap().evicted.is_some());
        }
        let each = started.elapsed() / rounds;
        println!("slots: eviction among {cap} slots takes {each:?}");
        assert_eq!(table.len, cap);
    }
}
