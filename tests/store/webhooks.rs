//! Webhooks (issue 20) end to end on both engines: changes made through the
//! store write their events in the same transaction, and the real sender
//! POSTs them to a real HTTP receiver on loopback, which checks each
//! signature as the Standard Webhooks libraries do. Time is passed in, so a
//! day of retries takes no time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use clinivox::config::{raw::RawWebhook, Config};
use clinivox::store::*;
use clinivox::webhooks::sender::Sender;
use clinivox::webhooks::{verify, Webhook};

use super::{book_at, now, patient, staff, utc};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver got: (event id, type, order key in `data`, signature valid).
#[derive(Debug, Clone)]
struct Received {
    id: String,
    kind: String,
    body: serde_json::Value,
    signed: bool,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// The status it answers (200 unless a test makes it fail).
    status: Arc<Mutex<u16>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let signed = ts.parse::<i64>().is_ok_and(|t| verify(SECRET, &id, t, &body, &sig));
    let status = *r.status.lock().unwrap();
    if status == 200 {
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let kind = json["type"].as_str().unwrap_or("").to_string();
        r.got.lock().unwrap().push(Received { id, kind, body: json, signed });
    }
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// Listens on `port` (0: any) of 127.0.0.1; returns its port.
    async fn start(&self, port: u16) -> u16 {
        *self.status.lock().unwrap() = 200;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn webhook(port: u16, events: Option<&[&str]>) -> Webhook {
    let raw = RawWebhook {
        name: Some("practice".into()),
        url: Some(format!("http://127.0.0.1:{port}/hooks")),
        secret: Some(SECRET.into()),
        events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let w = Webhook::validate_all(&[raw], &mut |f, m| errors.push((f, m)));
    assert!(errors.is_empty(), "{errors:?}");
    w.into_iter().next().unwrap()
}

fn sender(store: &Store, w: &Webhook, owner: &str) -> Sender {
    Sender::new(store.clone(), vec![w.clone()], owner.into()).unwrap()
}

/// Every event type, made the way the service makes it, arrives once,
/// signed, with ids and times and nothing that names the patient; a
/// booking that failed sends nothing.
pub async fn webhooks_deliver_every_event_once_signed(store: Store, _: Config) {
    let rx = Receiver::default();
    let port = rx.start(0).await;
    let w = webhook(port, None);
    let store = store.with_webhooks(vec![w.subscription()]);
    let ana = patient(&store, "Ana Webhook", "+34600123001").await;
    let luis = patient(&store, "Luis Webhook", "+34600123002").await;
    let phone = Actor::new("assistant", Channel::Phone);
    let slot = utc("2026-11-24T10:00:00Z");
    let a = store.book(book_at(&ana, "dr-garcia", slot), &phone, now()).await.unwrap();
    // A change that failed (the slot is taken) leaves no event.
    assert!(store.book(book_at(&luis, "dr-garcia", slot), &staff(), now()).await.is_err());
    store.confirm(&a.id, &phone, now()).await.unwrap();
    let to = Reschedule { provider_id: None, starts_at: utc("2026-11-24T11:00:00Z"), hold_token: None };
    store.reschedule(&a.id, to, &staff(), now()).await.unwrap();
    store.cancel(&a.id, &phone, now()).await.unwrap();
    let call = store
        .start_call(
            NewCall {
                direction: "inbound".into(),
                remote_number: "+34600123001".into(),
                patient_id: Some(ana.id.clone()),
                language: Some("es".into()),
                appointment_id: None,
            },
            now(),
        )
        .await
        .unwrap();
    store
        .finish_call(&call.id, "transferred", Some(&ana.id), Some("reception"), Some("quiere hablar con la doctora"), now())
        .await
        .unwrap();
    let callback = NewCallback {
        call_id: Some(call.id.clone()),
        patient_id: Some(ana.id.clone()),
        name: "Ana Webhook".into(),
        phone: "+34600123001".into(),
        reason: "resultados de la analítica".into(),
        language: "es".into(),
        promised: "2026-11-23 12:00".into(),
    };
    let cb = store.create_callback(callback, &phone, now()).await.unwrap();
    let b = store.book(book_at(&luis, "dr-garcia", utc("2026-11-25T10:00:00Z")), &staff(), now()).await.unwrap();
    store.enqueue_job("escalation", &b.id, &luis.id, now(), now()).await.unwrap();
    let job = store.claim_job("escalation", "node-a", Duration::minutes(15), now()).await.unwrap().unwrap();
    store.finish_attempt(&job.id, "node-a", "confirmed", None, now()).await.unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let entry = NewWaitlistEntry {
        patient_id: luis.id.clone(),
        specialty_id: a.specialty_id.clone(),
        provider_id: None,
        earliest: day,
        latest: day,
        notes: None,
    };
    let entry = store.waitlist_add(entry, &staff(), now()).await.unwrap();
    store.waitlist_fulfil(&entry.id, &b.id, &a.id, now()).await.unwrap();

    let sent = sender(&store, &w, "node-a").deliver_due(now()).await.unwrap();
    let got = rx.got();
    let kinds: Vec<&str> = got.iter().map(|r| r.kind.as_str()).collect();
    let mut sorted = kinds.clone();
    sorted.sort_unstable();
    let mut all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    all.push("appointment.booked"); // Luis's booking too
    all.sort_unstable();
    assert_eq!(sorted, all, "each event type once ({sent} attempted): {kinds:?}");
    assert!(got.iter().all(|r| r.signed), "every signature verifies");
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "distinct event ids");
    // One appointment's events in the order they happened.
    let of_a: Vec<&str> = got
        .iter()
        .filter(|r| r.body["data"]["appointment_id"] == a.id.as_str() && r.kind.starts_with("appointment."))
        .map(|r| r.kind.as_str())
        .collect();
    assert_eq!(of_a, ["appointment.booked", "appointment.confirmed", "appointment.rescheduled", "appointment.cancelled"]);
    let booked =
        &got.iter().find(|r| r.kind == "appointment.booked" && r.body["data"]["appointment_id"] == a.id.as_str()).unwrap().body["data"];
    assert_eq!((booked["channel"].as_str(), booked["by"].as_str()), (Some("phone"), Some("assistant")));
    let ended = &got.iter().find(|r| r.kind == "call.ended").unwrap().body["data"];
    assert_eq!((ended["outcome"].as_str(), ended["transferred"].as_bool()), (Some("transferred"), Some(true)));
    assert_eq!(got.iter().find(|r| r.kind == "callback.requested").unwrap().body["data"]["callback_id"], cb.id.as_str());
    // Ids and times only: no name, number, reason or summary.
    let everything = serde_json::to_string(&got.iter().map(|r| &r.body).collect::<Vec<_>>()).unwrap();
    for secret in ["Ana Webhook", "600123001", "analítica", "doctora"] {
        assert!(!everything.contains(secret), "{secret} was sent");
    }
    // Nothing is sent twice.
    assert_eq!(sender(&store, &w, "node-a").deliver_due(now() + Duration::hours(1)).await.unwrap(), 0);
    let log = store.deliveries_page(Some("delivered"), Page { limit: 100, offset: 0 }).await.unwrap();
    assert_eq!(log.len(), got.len());
    assert!(log.iter().all(|d| d.attempts == 1 && d.last_status == Some(200)));
    // The manager's dashboard sees them.
    let samples = store.metric_samples().await.unwrap();
    let delivered = samples.iter().find(|(name, labels, _)| {
        *name == "clinivox_webhook_deliveries"
            && labels.contains(&("webhook", "practice".into()))
            && labels.contains(&("status", "delivered".into()))
    });
    assert_eq!(delivered.map(|s| s.2), Some(got.len() as i64), "{samples:?}");
}

/// The receiver down (nothing listening, then answering 503): retried with
/// back-off, then everything delivered in order once it is back; events
/// written before any sender ran (the service was stopped, or died, after
/// the booking) go too. A delivery claimed by a node that died mid-send is
/// taken over when its lease runs out. The admin can send one again.
pub async fn webhooks_survive_a_receiver_down_and_a_dead_node(store: Store, _: Config) {
    // A port nobody listens on yet.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let w = webhook(port, Some(&["appointment.booked", "appointment.cancelled", "appointment.confirmed"]));
    let store = store.with_webhooks(vec![w.subscription()]);
    let ana = patient(&store, "Ana Caída", "+34600123003").await;
    let a = store.book(book_at(&ana, "dr-garcia", utc("2026-11-24T12:00:00Z")), &staff(), now()).await.unwrap();
    store.confirm(&a.id, &staff(), now()).await.unwrap();
    store.cancel(&a.id, &staff(), now()).await.unwrap();
    // Not subscribed: no row at all.
    store
        .start_call(
            NewCall {
                direction: "inbound".into(),
                remote_number: "+34600123003".into(),
                patient_id: None,
                language: None,
                appointment_id: None,
            },
            now(),
        )
        .await
        .unwrap();

    // Connection refused: the first event fails, the later ones of the same
    // appointment wait behind it.
    let node = sender(&store, &w, "node-a");
    assert_eq!(node.deliver_due(now()).await.unwrap(), 1);
    let pending = store.deliveries_page(Some("pending"), Page { limit: 10, offset: 0 }).await.unwrap();
    assert_eq!(pending.len(), 3);
    let first = pending.iter().find(|d| d.event_type == "appointment.booked").unwrap();
    assert_eq!(first.attempts, 1);
    assert!(first.last_error.as_deref().unwrap_or("").contains("connect"), "{first:?}");
    assert_eq!(first.next_attempt_at, now() + Duration::seconds(5));
    assert_eq!(node.deliver_due(now() + Duration::seconds(2)).await.unwrap(), 0, "not before its back-off");

    // Up, but answering 503 for a while.
    let rx = Receiver::default();
    rx.start(port).await;
    *rx.status.lock().unwrap() = 503;
    let mut t = now() + Duration::seconds(5);
    assert_eq!(node.deliver_due(t).await.unwrap(), 1);
    let d = store.delivery(&first.id).await.unwrap();
    assert_eq!((d.attempts, d.last_status), (2, Some(503)));

    // A node claims the next attempt and dies before settling it.
    *rx.status.lock().unwrap() = 200;
    t = d.next_attempt_at;
    let dead = store.claim_deliveries("practice", "node-dead", t + Duration::minutes(5), 20, t).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(node.deliver_due(t + Duration::minutes(1)).await.unwrap(), 0, "leased by the dead node");
    // Its lease runs out: a new node (or this one restarted) delivers all, in order.
    let restarted = sender(&store, &w, "node-b");
    assert_eq!(restarted.deliver_due(t + Duration::minutes(6)).await.unwrap(), 3);
    let kinds: Vec<String> = rx.got().iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds, ["appointment.booked", "appointment.confirmed", "appointment.cancelled"]);

    // The manual re-send: the same event again, same id.
    let again = store.resend_delivery(&first.id, &staff(), t).await.unwrap();
    assert_eq!(again.status, "pending");
    assert_eq!(restarted.deliver_due(t + Duration::minutes(7)).await.unwrap(), 1);
    let got = rx.got();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].id, got[0].id, "receivers de-duplicate by the event id");
    assert!(got.iter().all(|r| r.signed));
}

/// An erasure cancels the patient's future appointments: the practice
/// system is told, by ids only (the name is gone by then anyway).
pub async fn webhooks_tell_of_an_erasures_cancellations(store: Store, _: Config) {
    let rx = Receiver::default();
    let port = rx.start(0).await;
    let w = webhook(port, Some(&["appointment.cancelled"]));
    let store = store.with_webhooks(vec![w.subscription()]);
    let ana = patient(&store, "Ana Borrada", "+34600123005").await;
    let a = store.book(book_at(&ana, "dr-garcia", utc("2026-11-24T09:00:00Z")), &staff(), now()).await.unwrap();
    store.erase_patient(&ana.id, &staff(), now()).await.unwrap();
    assert_eq!(sender(&store, &w, "node-a").deliver_due(now()).await.unwrap(), 1);
    let got = rx.got();
    assert_eq!((got[0].kind.as_str(), got[0].body["data"]["appointment_id"].as_str()), ("appointment.cancelled", Some(a.id.as_str())));
    assert!(got[0].signed);
}

/// A receiver down for more than a day: the delivery is given up, in the
/// log as failed with the last answer.
pub async fn webhooks_give_up_after_a_day(store: Store, _: Config) {
    let rx = Receiver::default();
    let port = rx.start(0).await;
    *rx.status.lock().unwrap() = 500;
    let w = webhook(port, Some(&["appointment.booked"]));
    let store = store.with_webhooks(vec![w.subscription()]);
    let ana = patient(&store, "Ana Rendida", "+34600123004").await;
    store.book(book_at(&ana, "dr-garcia", utc("2026-11-24T12:30:00Z")), &staff(), now()).await.unwrap();
    let node = sender(&store, &w, "node-a");
    let mut t: DateTime<Utc> = now();
    for _ in 0..40 {
        node.deliver_due(t).await.unwrap();
        let d = &store.deliveries_page(None, Page { limit: 1, offset: 0 }).await.unwrap()[0];
        if d.status != "pending" {
            break;
        }
        t = d.next_attempt_at;
    }
    let d = &store.deliveries_page(None, Page { limit: 1, offset: 0 }).await.unwrap()[0];
    assert_eq!((d.status.as_str(), d.last_status), ("failed", Some(500)));
    assert!(d.attempts >= 9 && t <= now() + Duration::hours(24), "{d:?}");
}

/// Two nodes on one database (each its own connection pool), sending at
/// the same moment: every event reaches the receiver once.
pub async fn webhooks_two_nodes_send_each_event_once(store: Store, _: Config) {
    let rx = Receiver::default();
    let port = rx.start(0).await;
    let w = webhook(port, Some(&["appointment.booked"]));
    let store = store.with_webhooks(vec![w.subscription()]);
    for i in 0..30 {
        let p = patient(&store, &format!("Nodo {i}"), &format!("+346001240{i:02}")).await;
        let at = utc("2026-11-30T08:00:00Z") + Duration::minutes(15 * i64::from(i % 12)) + Duration::days(i64::from(i / 12));
        store.book(book_at(&p, "dr-garcia", at), &staff(), now()).await.unwrap();
    }
    let second = store.connect_again().await.unwrap();
    let (a, b) = (sender(&store, &w, "node-a"), sender(&second, &w, "node-b"));
    let (x, y) = tokio::join!(a.deliver_due(now()), b.deliver_due(now()));
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.got() {
        *per_id.entry(r.id).or_default() += 1;
    }
    assert_eq!(per_id.len(), 30, "node a sent {x}, node b {y}");
    assert!(per_id.values().all(|&n| n == 1), "{per_id:?}");
    assert_eq!(x + y, 30);
}
