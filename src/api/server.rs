//! The API's HTTP/1.1 listener, safe on a public address: a client must send
//! its headers within `header_read_timeout` (slow-loris and idle keep-alive
//! connections are cut off), a request must be answered within
//! `request_timeout` (a trickled body gets a 408), and at most
//! `max_connections` are served at once. Past the limit the listener stops
//! accepting and new connections wait in the kernel's backlog, as mini-redis
//! does, so file descriptors cannot run out. It is `axum::serve` with those
//! knobs, which `axum::serve` does not offer (hyper's header timeout needs a
//! timer that axum never sets). HTTP/2 is not served, as with axum's default
//! features: h2c has no header timeout, and clients reach the API over
//! HTTP/1.1. With `[http] tls_cert`/`tls_key` it is HTTPS (rustls, the
//! certificate reloaded when it changes on disk, see `crate::tls`); the
//! handshake must finish within the header timeout.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Problem;
use crate::config::HttpConfig;

/// After an accept error (EMFILE: out of file descriptors) the listener waits
/// this long before trying again, doubling up to [`MAX_BACKOFF`], instead of
/// spinning on an error that only closing connections can clear.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (bounded by the timeouts) and
/// closes idle connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let tls = match &limits.tls {
        Some(files) => {
            let cert = crate::tls::ReloadingCert::new(files.clone()).map_err(io::Error::other)?;
            Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(cert, &[b"http/1.1"]).map_err(io::Error::other)?))
        }
        None => None,
    };
    let app = app.layer(axum::middleware::from_fn_with_state(limits.request_timeout, request_deadline));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = MIN_BACKOFF;
    loop {
        // A free slot first, then accept: at the limit nothing is accepted.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                (stream, peer)
            }
            // The peer gave up between SYN and accept: nothing to wait for.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "HTTP accept failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Handlers that log the client's address (the console's failed logins) find it here.
        let service = TowerToHyperService::new(tower::Layer::layer(&axum::Extension(axum::extract::ConnectInfo(peer)), app.clone()));
        let (watcher, http, tls) = (graceful.watcher(), http.clone(), tls.clone());
        let handshake_limit = limits.header_read_timeout;
        tokio::spawn(async move {
            let r = match tls {
                None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => match tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => watcher.watch(http.serve_connection(TokioIo::new(s), service)).await,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "HTTPS handshake failed");
                        Ok(())
                    }
                    Err(_) => Ok(()),
                },
            };
            if let Err(e) = r {
                // Timeouts and resets by clients are routine here.
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection is asked to close after its current request; the
    // timeouts bound how long that takes, and this bounds it once more.
    let drain = limits.header_read_timeout + limits.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP connections still open after {drain:?}; stopping anyway");
    }
    Ok(())
}

/// Answers 408 when a request (reading its body included: extractors run in
/// the handler) is not done within the limit, so a client trickling its body
/// holds a connection no longer than that.
async fn request_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let detail = format!("the request was not completed within {} s", limit.as_secs_f32());
            let mut r = Problem::new(StatusCode::REQUEST_TIMEOUT, "timeout", "Request timeout", detail).into_response();
            // The request's body may be half read: the connection cannot be reused.
            r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            r
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_told_apart() {
        // EMFILE is not a connection error: it backs off rather than spinning.
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
        assert!(is_connection_error(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    }
}
