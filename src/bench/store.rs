//! `clinivox bench store`: booking throughput and latency when 1, 8 or 64
//! clients race to book one week of the demo clinic's slots, on SQLite and
//! on PostgreSQL. Each client picks a random slot not yet known to be taken
//! and books it; collisions are real conflicts answered by the database.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;

use crate::phone::E164;
use crate::store::{Actor, Channel, NewAppointment, NewPatient, SlotQuery, Store, StoreError};
use crate::testing;

pub struct Row {
    pub backend: &'static str,
    pub clients: usize,
    pub bookings: usize,
    pub conflicts: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run(postgres: Option<&str>, clients: &[usize]) -> Result<Vec<Row>, StoreError> {
    let config = testing::demo_config();
    let mut rows = Vec::new();
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>12} {:>9} {:>9}",
        "backend", "clients", "bookings", "conflicts", "bookings/s", "p50 ms", "p99 ms"
    );
    for &n in clients {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store = testing::sqlite_store(dir.path(), &config).await?;
        rows.push(print(contend(store, "sqlite", n).await?));
        if let Some(url) = postgres {
            let store = testing::postgres_store_at(url, &config, 16).await?;
            rows.push(print(contend(store, "postgres", n).await?));
        }
    }
    Ok(rows)
}

fn print(r: Row) -> Row {
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>12.0} {:>9.2} {:>9.2}",
        r.backend,
        r.clients,
        r.bookings,
        r.conflicts,
        r.bookings as f64 / r.seconds,
        r.p50_ms,
        r.p99_ms
    );
    r
}

async fn contend(store: Store, backend: &'static str, clients: usize) -> Result<Row, StoreError> {
    let now: DateTime<Utc> = "2026-11-23T06:00:00Z".parse().expect("valid timestamp");
    let actor = Actor::new("bench", Channel::Api);
    let mut patients = Vec::new();
    for i in 0..clients.max(1) {
        let phone = E164::parse(&format!("+3460{i:07}")).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let new = NewPatient {
            name: format!("Bench {i}"),
            phones: vec![phone],
            date_of_birth: NaiveDate::from_ymd_opt(1960, 1, 1).expect("valid date"),
            national_id: None,
            preferred_language: "es".into(),
            contact_consent: true,
        };
        patients.push(store.create_patient(new, &actor, now).await?.id);
    }
    // One week of every provider's slots: Monday 30 November to Sunday 6 December 2026.
    let mut slots = Vec::new();
    for p in store.providers(None).await? {
        let q = SlotQuery {
            provider: Some(p.id.clone()),
            from: NaiveDate::from_ymd_opt(2026, 11, 30),
            to: NaiveDate::from_ymd_opt(2026, 12, 6),
            ..Default::default()
        };
        slots.extend(store.free_slots(&q, now).await?.into_iter().map(|s| (s.provider_id, s.starts_at)));
    }
    let open = Arc::new(Mutex::new(slots));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for patient in patients.into_iter().take(clients) {
        let (store, open, actor) = (store.clone(), open.clone(), actor.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut bookings, mut conflicts) = (Vec::new(), 0usize, 0usize);
            loop {
                let pick = {
                    let open = open.lock().unwrap_or_else(|e| e.into_inner());
                    if open.is_empty() {
                        break;
                    }
                    open[rand::thread_rng().gen_range(0..open.len())].clone()
                };
                let new = NewAppointment {
                    patient_id: patient.clone(),
                    provider_id: pick.0.clone(),
                    starts_at: pick.1,
                    hold_token: None,
                    notes: None,
                };
                let t = Instant::now();
                let result = store.book(new, &actor, now).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                match result {
                    Ok(_) => bookings += 1,
                    Err(StoreError::Conflict(_)) => conflicts += 1,
                    Err(e) => return Err(e),
                }
                // Booked by us or by a racer: either way the slot is gone.
                open.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| *s != pick);
            }
            Ok((latencies, bookings, conflicts))
        }));
    }
    let (mut latencies, mut bookings, mut conflicts) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, b, c) = t.await.map_err(|e| StoreError::Corrupt(e.to_string()))??;
        latencies.extend(l);
        bookings += b;
        conflicts += c;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    store.close().await;
    Ok(Row {
        backend,
        clients,
        bookings,
        conflicts,
        seconds,
        p50_ms: super::percentile(&latencies, 50.0),
        p99_ms: super::percentile(&latencies, 99.0),
    })
}
