//! The edges' settings a running server replaces on SIGHUP (docs/PROTOCOL.md
//! 5.5, Reloading): each new connection and request reads the current ones,
//! and connections already open keep those they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Access;
use crate::hub::session::Limits;
use crate::limits::{ConnectionLimits, Gate};
use crate::transport::http::Posting;
use crate::transport::line::LineConfig;
use crate::transport::ws::WsConfig;

/// What can change without a restart. A new reloadable setting is a field
/// here and a line in [`Live::replace`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Line clients' limits, timeouts and first room.
    pub line: LineConfig,
    /// WebSocket clients' limits, timeouts and first room.
    pub ws: WsConfig,
    /// The tokens clients must present.
    pub access: Access,
    /// Connections at once, per address and per second.
    pub connections: ConnectionLimits,
    /// What an HTTP post is held to: the rate per client address, the text limit.
    pub posts: Limits,
}

/// The current [`Settings`], read without a lock.
pub struct Live {
    line: ArcSwap<LineConfig>,
    ws: ArcSwap<WsConfig>,
    access: ArcSwap<Access>,
    gate: Arc<Gate>,
    posting: Posting,
}

impl Live {
    /// Starts with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            line: ArcSwap::from_pointee(settings.line),
            ws: ArcSwap::from_pointee(settings.ws),
            access: ArcSwap::from_pointee(settings.access),
            gate: Gate::new(settings.connections),
            posting: Posting::new(settings.posts),
        }
    }

    /// Puts `settings` in force for what comes next.
    pub fn replace(&self, settings: Settings) {
        self.line.store(Arc::new(settings.line));
        self.ws.store(Arc::new(settings.ws));
        self.access.store(Arc::new(settings.access));
        self.gate.set_limits(settings.connections);
        self.posting.set_limits(settings.posts);
    }

    /// How a new line connection behaves.
    pub fn line(&self) -> Arc<LineConfig> {
        self.line.load_full()
    }

    /// How a new WebSocket connection behaves.
    pub fn ws(&self) -> Arc<WsConfig> {
        self.ws.load_full()
    }

    /// The tokens a client must present now.
    pub fn access(&self) -> Arc<Access> {
        self.access.load_full()
    }

    /// What admits each new connection, under the limits now in force.
    pub fn gate(&self) -> Arc<Gate> {
        Arc::clone(&self.gate)
    }

    /// What admits each HTTP post, under the limits now in force.
    pub fn posting(&self) -> &Posting {
        &self.posting
    }
}
