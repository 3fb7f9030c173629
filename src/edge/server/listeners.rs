//! The listeners of `serve`, bound before anything else starts so that a port in use fails
//! first: admission, admin and, in broker mode, the broker.

use std::net::{SocketAddr, TcpListener};

use super::ServerError;

/// The listeners, bound before anything else starts: admission, admin and, in broker mode,
/// the broker.
pub struct Listeners {
    pub(super) webhook: (SocketAddr, TcpListener),
    pub(super) admin: (SocketAddr, TcpListener),
    pub(super) broker: Option<(SocketAddr, TcpListener)>,
}

impl Listeners {
    /// Binds every address given. Port 0 picks a free port; the "serving" log line names the
    /// ports bound, so a test can read them back instead of guessing a free one.
    pub fn bind(
        webhook: SocketAddr,
        admin: SocketAddr,
        broker: Option<SocketAddr>,
    ) -> Result<Self, ServerError> {
        Ok(Listeners {
            webhook: bind(webhook)?,
            admin: bind(admin)?,
            broker: broker.map(bind).transpose()?,
        })
    }

    /// The addresses bound: the webhook's, then the admin endpoint's.
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.webhook.0, self.admin.0)
    }

    /// The broker's address, when one was bound.
    pub fn broker_address(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(|(address, _)| *address)
    }
}

fn bind(addr: SocketAddr) -> Result<(SocketAddr, TcpListener), ServerError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((bound, listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_binds_free_ports_and_reports_them() {
        let any = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners::bind(any, any, Some(any)).unwrap();
        let (webhook, admin) = listeners.addresses();
        let broker = listeners.broker_address().unwrap();
        assert_ne!(webhook.port(), 0);
        assert_ne!(admin.port(), 0);
        assert_ne!(broker.port(), 0);
        assert!(webhook != admin && broker != webhook && broker != admin);
        let without = Listeners::bind(any, any, None).unwrap();
        assert_eq!(without.broker_address(), None);
    }
}
