//! Delivers the outbox: claims due deliveries (leased, so nodes sharing one
//! PostgreSQL never send one at once), POSTs each signed, and settles it:
//! delivered on a 2xx; otherwise due again after a back-off, for a day,
//! then given up (`failed`, in the delivery log, re-sendable through the
//! API). A receiver sees one appointment's events in order: the store hands
//! out only the first still pending of each.
//!
//! The HTTP client is hyper's one-connection client over a tokio stream
//! (rustls for https, with [`crate::tls`]'s settings): webhooks go out a few
//! at a time, and a pool would only keep connections to receivers open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Webhook;
use crate::clock::Clock;
use crate::store::{Delivery, Store, StoreError};

/// One attempt gives up after this (connect, TLS, request and answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries claimed at once per webhook.
const BATCH: i64 = 20;
/// A claim is another node's to take after this (covers a whole batch).
const LEASE: chrono::Duration = chrono::Duration::minutes(5);
/// Retried for this long after the event, then given up.
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// Waits after the 1st, 2nd, … failed attempt; the last repeats.
const BACKOFF_S: [i64; 9] = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800];
/// Most of a receiver's error answer kept in the delivery log.
const ERROR_KEPT: usize = 200;

#[derive(Debug, Error)]
pub enum SendError {
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the receiver answered {0}")]
    Status(u16, String),
}

/// Delivers for every configured webhook.
pub struct Sender {
    store: Store,
    webhooks: Vec<Webhook>,
    /// This node's name on its leases.
    owner: String,
    tls: HashMap<String, Arc<rustls::ClientConfig>>,
}

impl Sender {
    /// Reads each receiver's TLS trust now: a CA file that is missing is a
    /// start-up error, not a failed delivery later.
    pub fn new(store: Store, webhooks: Vec<Webhook>, owner: String) -> Result<Sender, crate::tls::TlsError> {
        let mut tls = HashMap::new();
        for w in webhooks.iter().filter(|w| w.url.scheme_str() == Some("https")) {
            let trust = crate::tls::PeerTrust { ca: w.ca.clone(), ..Default::default() };
            tls.insert(w.name.clone(), crate::tls::client_config(&trust)?);
        }
        Ok(Sender { store, webhooks, owner, tls })
    }

    /// Delivers until `stop` resolves, looking every `tick`.
    pub async fn run(self, clock: Arc<dyn Clock>, tick: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.deliver_due(clock.now()).await {
                tracing::warn!(error = %e, "webhooks: the outbox could not be read; trying again");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// One pass: everything due now, then what became due by it (the next
    /// event of an appointment whose previous one just went), until none.
    /// Returns the deliveries attempted.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut attempted = 0;
        loop {
            let mut any = false;
            for w in &self.webhooks {
                let due = self.store.claim_deliveries(&w.name, &self.owner, now + LEASE, BATCH, now).await?;
                for d in due {
                    any = true;
                    attempted += 1;
                    self.attempt(w, &d, now).await?;
                }
            }
            if !any {
                return Ok(attempted);
            }
        }
    }

    async fn attempt(&self, w: &Webhook, d: &Delivery, now: DateTime<Utc>) -> Result<(), StoreError> {
        let result = tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(w, d, now)).await.unwrap_or(Err(SendError::Timeout(ATTEMPT_TIMEOUT)));
        let settled = match result {
            Ok(status) => self.store.delivery_succeeded(&d.id, &self.owner, status, now).await,
            Err(e) => {
                let status = match &e {
                    SendError::Status(s, _) => Some(*s),
                    _ => None,
                };
                let retry = next_attempt(d.created_at, d.attempts + 1, now);
                // Ids and the receiver's answer only: no payload in the log.
                tracing::warn!(
                    webhook = %w.name, delivery = %d.id, event = %d.event_type, attempt = d.attempts + 1, error = %e,
                    gives_up = retry.is_none(), "webhook delivery failed"
                );
                let mut error = e.to_string();
                error.truncate(error.char_indices().nth(ERROR_KEPT).map_or(error.len(), |(i, _)| i));
                self.store.delivery_failed(&d.id, &self.owner, status, &error, retry, now).await
            }
        };
        match settled {
            // Another node took it over (this one was too slow): theirs now.
            Err(StoreError::Conflict(_)) => Ok(()),
            other => other,
        }
    }

    /// POSTs one delivery; its HTTP status when 2xx.
    async fn post(&self, w: &Webhook, d: &Delivery, now: DateTime<Utc>) -> Result<u16, SendError> {
        let host = w.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let https = w.url.scheme_str() == Some("https");
        let port = w.url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(SendError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let request = self.request(w, d, now);
        match self.tls.get(&w.name) {
            Some(config) if https => {
                let name = crate::tls::server_name(&host).ok_or_else(|| SendError::Tls(format!("{host:?} is not a valid server name")))?;
                let stream =
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| SendError::Tls(e.to_string()))?;
                send(stream, request).await
            }
            _ => send(tcp, request).await,
        }
    }

    fn request(&self, w: &Webhook, d: &Delivery, now: DateTime<Utc>) -> hyper::Request<Full<Bytes>> {
        let timestamp = now.timestamp();
        let authority = w.url.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let path = w.url.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "Clinivox-Webhooks")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", w.sign(&d.event_id, timestamp, &d.body))
            .body(Full::new(Bytes::from(d.body.clone())))
            .unwrap_or_else(|_| unreachable!("the URL was validated at start-up and the headers are ASCII"))
    }
}

async fn send<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let response = client.send_request(request).await?;
    let status = response.status().as_u16();
    // A little of the answer for the delivery log; bounded.
    let body = http_body_util::Limited::new(response.into_body(), 4096).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    conn.abort();
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(SendError::Status(status, String::from_utf8_lossy(&body).chars().take(ERROR_KEPT).collect()))
    }
}

/// When attempt `failed + 1` is due, or `None` past [`GIVE_UP_AFTER`].
pub fn next_attempt(created: DateTime<Utc>, failed: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let i = usize::try_from(failed.max(1) - 1).unwrap_or(usize::MAX).min(BACKOFF_S.len() - 1);
    let at = now + chrono::Duration::seconds(BACKOFF_S[i]);
    (at <= created + GIVE_UP_AFTER).then_some(at)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn retries_back_off_for_a_day_then_stop() {
        let t0 = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        assert_eq!(next_attempt(t0, 1, t0), Some(t0 + chrono::Duration::seconds(5)));
        assert_eq!(next_attempt(t0, 2, t0), Some(t0 + chrono::Duration::seconds(30)));
        // Every failure is followed by a longer wait, up to 8 h.
        let mut now = t0;
        let mut n = 1;
        while let Some(at) = next_attempt(t0, n, now) {
            assert!(at > now);
            now = at;
            n += 1;
        }
        assert!(n > 8, "{n} attempts");
        assert!(now <= t0 + GIVE_UP_AFTER && now + chrono::Duration::hours(8) > t0 + GIVE_UP_AFTER, "given up after a day: {now}");
    }
}
