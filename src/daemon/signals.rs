//! `getapr serve`: the daemon under signals (SIGTERM/SIGINT drain and stop,
//! SIGHUP reloads) and systemd's readiness protocol.

use std::path::PathBuf;

use super::{Daemon, Error};
use crate::config::{Config, Source};

/// Runs the daemon on `config`, what [`Config::discover`] found for
/// `explicit` (the caller loads it first: `dns.workers` sizes the runtime),
/// with signals: SIGTERM/SIGINT drain and stop, SIGHUP discovers the
/// configuration again the same way and reloads it.
pub async fn serve(explicit: Option<PathBuf>, config: Config, source: Source) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before binding anything, so an early SIGHUP cannot kill us.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let daemon = Daemon::bind(config, source).await?;
    let handle = daemon.handle();
    // systemd (Type=notify): READY=1 from this task, which first runs once
    // `run` below has started every listener (the sockets are bound and
    // listening already, so nothing sent after READY=1 is lost).
    let notify = crate::notify::Notifier::from_env();
    notify.spawn_watchdog();
    tokio::spawn(async move {
        notify.ready();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    notify.reloading();
                    let reloaded = match Config::discover(explicit.as_deref()) {
                        Ok((config, _)) => handle.reload(config).await,
                        Err(e) => Err(e.into()),
                    };
                    match reloaded {
                        Ok(()) => tracing::info!("configuration reloaded"),
                        Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                    }
                    notify.ready();
                }
            }
        }
        notify.stopping();
        tracing::info!("stopping: draining queries in flight");
        handle.shutdown();
    });
    daemon.run().await
}
