//! The connection cap of the admission endpoint (`--max-connections`): an acceptor that closes
//! connections past the cap before their TLS handshake, and the connection type that holds its
//! place under the cap until it is dropped.

use std::future::Future;
use std::sync::Arc;

/// Caps the connections open at once: past `max` a new connection is closed at accept, before
/// its TLS handshake, so idle or slow clients cannot exhaust memory or file descriptors.
#[derive(Clone)]
pub struct LimitedAcceptor<A> {
    inner: A,
    permits: Arc<tokio::sync::Semaphore>,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(inner: A, max: usize) -> Self {
        LimitedAcceptor {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
        }
    }
}

impl<A, I, S> axum_server::accept::Accept<I, S> for LimitedAcceptor<A>
where
    A: axum_server::accept::Accept<I, S> + Clone + Send + 'static,
    A::Future: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = A::Service;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send>,
    >;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let inner = self.inner.clone();
        Box::pin(async move {
            let permit = permit.map_err(|_| {
                std::io::Error::other("connection limit (--max-connections) reached")
            })?;
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((
                Counted {
                    stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection that holds its place under the connection cap until it is dropped.
pub struct Counted<S> {
    stream: S,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
