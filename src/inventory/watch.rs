//! Publishing a new [`Snapshot`] whenever the host's interfaces change, by
//! polling (see the module documentation of [`inventory`](super) for why
//! not rtnetlink events).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{self, MissedTickBehavior};

use super::{Inventory, Snapshot};

/// The default poll period: a new or vanished address is published at most
/// this long after the kernel has it.
pub const POLL: Duration = Duration::from_secs(2);

/// The shortest period [`watch`] accepts; shorter ones are raised to it
/// (a zero period would make `tokio::time::interval` panic, and a tiny one
/// would spin).
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// Takes a snapshot of `inv` now and then every `every`, and publishes it
/// on `tx` when it differs from the one `tx` holds. Returns when every
/// receiver is gone.
///
/// Snapshots are taken on tokio's blocking pool ([`Inventory::snapshot`]
/// reads kernel tables). A failed snapshot is logged (once per run of
/// failures) and the last good one stays published: a transient read error
/// must not look like every address vanishing. Added and removed addresses
/// and gateways are logged at `info`.
pub async fn watch<I>(inv: I, every: Duration, tx: watch::Sender<Arc<Snapshot>>)
where
    I: Inventory + Send + Sync + 'static,
{
    let inv = Arc::new(inv);
    let mut tick = time::interval(every.max(MIN_PERIOD));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tx.closed() => return,
        }
        let inv = Arc::clone(&inv);
        let taken = match tokio::task::spawn_blocking(move || inv.snapshot()).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(format!("snapshot task: {join}"))),
        };
        let snap = match taken {
            Ok(snap) => snap,
            Err(e) => {
                if !failing {
                    tracing::warn!("inventory: {e}; keeping the last snapshot");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            tracing::info!("inventory: readable again");
            failing = false;
        }
        tx.send_if_modified(|current| {
            if **current == snap {
                return false;
            }
            log_changes(current, &snap);
            *current = Arc::new(snap);
            true
        });
    }
}

fn log_changes(old: &Snapshot, new: &Snapshot) {
    for a in new.addresses.iter().filter(|a| !old.addresses.contains(a)) {
        tracing::info!("inventory: address {a} added");
    }
    for a in old.addresses.iter().filter(|a| !new.addresses.contains(a)) {
        tracing::info!("inventory: address {a} removed");
    }
    let gateways =
        |s: &Snapshot| -> Vec<_> { s.gateways4.iter().chain(&s.gateways6).cloned().collect() };
    let (old_gw, new_gw) = (gateways(old), gateways(new));
    for g in new_gw.iter().filter(|g| !old_gw.contains(g)) {
        tracing::info!("inventory: default gateway {g} on {} added", g.interface);
    }
    for g in old_gw.iter().filter(|g| !new_gw.contains(g)) {
        tracing::info!("inventory: default gateway {g} on {} removed", g.interface);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{address, gateway, host};
    use std::collections::VecDeque;
    use std::io;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// A host on eth0 with these addresses and the IPv4 gateway 192.0.2.1.
    fn snap(addrs: &[&str]) -> Snapshot {
        Snapshot {
            gateways4: vec![gateway("192.0.2.1")],
            ..host(addrs.iter().map(|a| address(a)).collect())
        }
    }

    /// An inventory that plays a script, one entry per call, then repeats
    /// its last entry; it counts the calls.
    fn scripted(
        script: Vec<io::Result<Snapshot>>,
    ) -> (impl Inventory + Send + Sync + 'static, Arc<Mutex<usize>>) {
        let calls = Arc::new(Mutex::new(0));
        let seen = Arc::clone(&calls);
        let script = Mutex::new(VecDeque::from(script));
        let fake = move || {
            *seen.lock().unwrap() += 1;
            let mut s = script.lock().unwrap();
            match s.len() {
                0 => unreachable!("empty script"),
                1 => match &s[0] {
                    Ok(snap) => Ok(snap.clone()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                },
                _ => s.pop_front().unwrap(),
            }
        };
        (fake, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_only_changes_and_keeps_the_last_good_one() {
        let a = snap(&["2001:db8::1"]);
        let b = snap(&["2001:db8::1", "2001:db8::2"]);
        let (fake, calls) = scripted(vec![
            Ok(a.clone()),                  // t=0: published
            Ok(a.clone()),                  // t=2: same, not published
            Err(io::Error::other("flaky")), // t=4: kept a
            Ok(b.clone()),                  // t=6: published
        ]);
        let (tx, mut rx) = watch::channel(Arc::new(Snapshot::default()));
        let start = Instant::now();
        let task = tokio::spawn(watch(fake, Duration::from_secs(2), tx));

        rx.changed().await.unwrap();
        assert_eq!(**rx.borrow_and_update(), a);
        assert_eq!(start.elapsed(), Duration::ZERO);

        rx.changed().await.unwrap();
        assert_eq!(**rx.borrow_and_update(), b);
        assert_eq!(start.elapsed(), Duration::from_secs(6));

        // b repeats: nothing more is published however long we wait.
        assert!(
            time::timeout(Duration::from_secs(60), rx.changed())
                .await
                .is_err()
        );
        assert!(*calls.lock().unwrap() >= 30);

        // Dropping the last receiver ends the watch.
        drop(rx);
        time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn zero_period_is_raised_not_a_panic() {
        let (fake, calls) = scripted(vec![Ok(snap(&["192.0.2.2"]))]);
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let task = tokio::spawn(watch(fake, Duration::ZERO, tx));
        time::sleep(Duration::from_secs(1)).await;
        let n = *calls.lock().unwrap();
        assert!((10..=11).contains(&n), "{n} snapshots in 1 s");
        drop(rx);
        task.await.unwrap();
    }
}
