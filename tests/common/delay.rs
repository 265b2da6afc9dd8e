//! A userspace delay box for the lab ([`super::lab`]): this machine has no
//! netem, so a router's forwarded packets of one family are led through a
//! TUN device whose reader, a small Python process, writes each packet back
//! after a fixed delay.
//!
//! ```text
//!  lan0 ──▶ rule "iif lan0 → table 150" ──▶ delay6 (TUN) ──▶ Python: wait ──┐
//!  wan0 ──▶ rule "iif wan0 → table 150" ──▶ delay6        ──▶ Python: wait ──┤
//!                                                                           ▼
//!                     written back into delay6: "iif delay6" → main table → out
//! ```
//!
//! Policy routing in the router sends every forwarded IPv6 packet that
//! arrives on the LAN or the WAN side (the local table, consulted first,
//! keeps what is addressed to the router itself) to the TUN device; the
//! process reads it, holds it for the delay, and writes it back; the kernel
//! then routes it as arriving on the TUN device, by the main table. So both
//! directions wait once each: +delay each way, 2 × delay more RTT, for TCP
//! handshakes too (a TCP relay would answer the SYN itself). Packets keep
//! their order (one fixed delay, a FIFO).
//!
//! The TUN device is not persistent: it disappears with the process, which
//! exits when its stdin closes (the test process is gone) and is killed
//! when the [`Delay`] drops. The routing rules and table live in the
//! router's namespace and go with the lab.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::lab::{self, Lab, LabChild, Ns};

/// The TUN device's name in the router.
pub const DEVICE: &str = "delay6";
/// The routing table the rules point at.
const TABLE: u32 = 150;

/// Creates the TUN device `argv[1]`, prints "ready", then writes every
/// packet read from it back after `argv[2]` seconds, until stdin closes.
const SCRIPT: &str = r#"
import collections, fcntl, os, select, struct, sys, time
name, delay = sys.argv[1], float(sys.argv[2])
fd = os.open("/dev/net/tun", os.O_RDWR)
# struct ifreq: the name, then IFF_TUN | IFF_NO_PI; 40 bytes in all.
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH22x", name.encode(), 0x0001 | 0x1000))
print("ready", flush=True)
queue = collections.deque()
stdin = sys.stdin.fileno()
while True:
    timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
    readable, _, _ = select.select([fd, stdin], [], [], timeout)
    if stdin in readable and not os.read(stdin, 4096):
        sys.exit(0)
    if fd in readable:
        queue.append((time.monotonic() + delay, os.read(fd, 65536)))
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        os.write(fd, queue.popleft()[1])
"#;

/// The delay box running in a router; the process stops when this drops.
#[derive(Debug)]
pub struct Delay {
    _child: LabChild,
    pub each_way: Duration,
}

impl Delay {
    /// Delays every IPv6 packet `router` forwards between `lan0` and `wan0`
    /// by `each_way`, in both directions. Panics when the device or the
    /// routes cannot be set up.
    pub fn ipv6(lab: &Lab, router: Ns, each_way: Duration) -> Delay {
        let mut command = lab.command(
            router,
            &[
                lab::python().to_string_lossy().into_owned(),
                "-S".to_owned(),
                "-c".to_owned(),
                SCRIPT.to_owned(),
                DEVICE.to_owned(),
                each_way.as_secs_f64().to_string(),
            ],
        );
        // stdin stays open in the child until the test process exits.
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                }
            }
        });
        assert!(
            ready_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the delay box did not start (see its stderr above)"
        );
        let delay = Delay {
            _child: child,
            each_way,
        };
        lab.run(router, &["ip", "link", "set", DEVICE, "up"]);
        let table = TABLE.to_string();
        lab.run(
            router,
            &[
                "ip", "-6", "route", "add", "default", "dev", DEVICE, "table", &table,
            ],
        );
        for (dev, pref) in [("lan0", "100"), ("wan0", "101")] {
            lab.run(
                router,
                &[
                    "ip", "-6", "rule", "add", "iif", dev, "lookup", &table, "pref", pref,
                ],
            );
        }
        delay
    }
}
