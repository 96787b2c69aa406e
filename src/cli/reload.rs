//! `serve` on SIGHUP (docs/PROTOCOL.md 5.5, Reloading): the settings read
//! again (the `--config` file, still under the variables and the command
//! line) and the TLS certificate and key files read again; what can change
//! live is applied to new connections, each change logged, and no
//! connection is dropped.

use std::sync::Arc;

use clap::ArgMatches;
use switchboard::net::tls::{Certificate, Identity};
use switchboard::transport::live::Live;
use tokio::signal::unix::{Signal, SignalKind, signal};
use toml::Value;

use super::args::ServeArgs;
use super::config;
use super::serve::{check, identity, settings};

/// The settings SIGHUP applies, besides the TLS certificate; a change to any
/// other is logged as needing a restart. A new one is a key here and a field
/// of `Settings` (`transport/live.rs`).
const RELOADED: [&str; 13] = [
    "max-connections",
    "max-per-address",
    "connect-rate",
    "trust",
    "max-line",
    "rate",
    "burst",
    "idle-timeout",
    "silent-timeout",
    "max-ws-message",
    "ping-interval",
    "token",
    "admin-token",
];

/// Settings whose values are never logged, with what the log calls them.
const SECRETS: [(&str, &str); 2] = [("token", "client token"), ("admin-token", "admin token")];

/// Reloads the settings on every SIGHUP.
pub struct Reloads {
    /// SIGHUP, or `None` when it cannot be listened for.
    hangups: Option<Signal>,
    /// clap's record of the command line, which still overrides the file.
    matches: ArgMatches,
    /// The settings in effect.
    args: ServeArgs,
    /// Where new connections read the settings.
    live: Arc<Live>,
    /// The pair TLS clients are shown, when TLS is on.
    certificate: Option<Arc<Certificate>>,
}

impl Reloads {
    /// Catches SIGHUP from now on (its default action would end the
    /// server), to reload the settings `args` that `matches` gave.
    pub fn catch(
        matches: ArgMatches,
        args: ServeArgs,
        live: Arc<Live>,
        certificate: Option<Arc<Certificate>>,
    ) -> Self {
        let hangups = signal(SignalKind::hangup())
            .map_err(|err| tracing::warn!("cannot listen for SIGHUP, so no reloads: {err}"))
            .ok();
        Self {
            hangups,
            matches,
            args,
            live,
            certificate,
        }
    }

    /// Reloads at each SIGHUP, forever.
    pub async fn run(mut self) {
        if let Some(mut hangups) = self.hangups.take() {
            while hangups.recv().await.is_some() {
                self.reload();
            }
        }
        std::future::pending().await
    }

    /// Reads the settings again, applies those that can change live and
    /// logs one line per change; settings that do not pass change nothing.
    fn reload(&mut self) {
        let loaded = config::load(&self.matches).and_then(|args| {
            check(&args)?;
            let settings = settings(&args)?;
            Ok((
                config::table(&self.args)?,
                config::table(&args)?,
                args,
                settings,
            ))
        });
        let (old, new, args, settings) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => return tracing::warn!("reload refused, nothing changed: {err:#}"),
        };
        let mut changed = self.reload_certificate(&args);
        for (key, before, after) in changes(&old, &new) {
            changed = true;
            self.log_change(&key, before.as_ref(), after.as_ref());
        }
        if !changed {
            tracing::info!("reload: nothing changed");
        }
        self.live.replace(settings);
        self.args = args;
    }

    /// Whether the certificate comes from files, which a reload reads again.
    fn certificate_from_files(&self) -> bool {
        self.certificate.is_some() && !self.args.tls_self_signed
    }

    /// Reads the certificate and key files (as `args` name them) again and
    /// presents the pair from the next handshake on, when it changed and is
    /// usable. Returns whether it was replaced.
    fn reload_certificate(&self, args: &ServeArgs) -> bool {
        let (Some(certificate), Some(identity)) = (&self.certificate, identity(args)) else {
            return false;
        };
        let Identity::Files { cert, .. } = &identity else {
            return false;
        };
        if !self.certificate_from_files() {
            return false;
        }
        match certificate.reload(&identity) {
            Ok(replaced) => {
                if replaced {
                    tracing::info!("reloaded: TLS certificate {}", cert.display());
                }
                replaced
            }
            Err(err) => {
                tracing::warn!("reload: TLS certificate refused, the old one stays: {err}");
                false
            }
        }
    }

    /// Logs what became of the change of `key`: applied, or waiting for a restart.
    fn log_change(&self, key: &str, before: Option<&Value>, after: Option<&Value>) {
        if matches!(key, "tls-cert" | "tls-key") && self.certificate_from_files() {
            // reload_certificate said what became of the files they name.
            return;
        }
        if !RELOADED.contains(&key) {
            let source = self
                .args
                .config
                .as_ref()
                .map_or_else(|| "the settings".into(), |file| file.display().to_string());
            return tracing::warn!("reload: --{key} changed in {source}, restart to apply");
        }
        match SECRETS.iter().find(|(secret, _)| *secret == key) {
            Some((_, name)) => tracing::info!("reloaded: {name} changed"),
            None => tracing::info!("reloaded: --{key} {} → {}", shown(before), shown(after)),
        }
    }
}

/// The keys whose values differ between `old` and `new`, with both values.
fn changes(old: &toml::Table, new: &toml::Table) -> Vec<(String, Option<Value>, Option<Value>)> {
    let keys = old
        .keys()
        .chain(new.keys().filter(|key| !old.contains_key(*key)));
    keys.filter(|key| old.get(*key) != new.get(*key))
        .map(|key| (key.clone(), old.get(key).cloned(), new.get(key).cloned()))
        .collect()
}

/// A setting's value for the log (`unset` when it has none).
fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "unset".into(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_listed_key_by_key() {
        let old: toml::Table = toml::from_str("rate = 20.0\ntoken = \"a\"\nburst = 5").unwrap();
        let new: toml::Table = toml::from_str("rate = 5.0\nburst = 5\nport = 1").unwrap();
        let keys: Vec<String> = changes(&old, &new).into_iter().map(|c| c.0).collect();
        assert_eq!(keys, ["rate", "token", "port"]);
        assert_eq!(shown(None), "unset");
        assert_eq!(shown(Some(&Value::Float(5.0))), "5.0");
    }
}
