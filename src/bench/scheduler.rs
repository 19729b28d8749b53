//! `clinivox bench scheduler`: how many due escalation jobs per second the
//! queue claims and completes, with 1 and 4 scheduler instances competing
//! (the outbound-call limit lifted: "dispatch" completes the job at once).

use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::escalation::scheduler::KIND;
use crate::phone::E164;
use crate::store::{Actor, Channel, NewAppointment, NewPatient, SlotQuery, Store, StoreError};
use crate::testing;

pub async fn run(postgres: Option<&str>, instances: &[usize]) -> Result<(), StoreError> {
    let config = testing::demo_config();
    println!("{:<10} {:>9} {:>6} {:>10} {:>9}", "backend", "instances", "jobs", "jobs/s", "seconds");
    for &n in instances {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store = testing::sqlite_store(dir.path(), &config).await?;
        drain(store, "sqlite", n).await?;
        if let Some(url) = postgres {
            drain(testing::postgres_store_at(url, &config, 16).await?, "postgres", n).await?;
        }
    }
    Ok(())
}

async fn drain(store: Store, backend: &str, instances: usize) -> Result<(), StoreError> {
    let now: DateTime<Utc> = "2026-11-23T06:00:00Z".parse().expect("valid timestamp");
    let jobs = seed(&store, now).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..instances {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let instance = format!("bench-{i}");
            let mut done = 0usize;
            while let Some(job) = store.claim_job(KIND, &instance, Duration::minutes(10), now).await? {
                store.finish_attempt(&job.id, &instance, "confirmed", None, now).await?;
                done += 1;
            }
            Ok::<usize, StoreError>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| StoreError::Corrupt(e.to_string()))??;
    }
    let secs = started.elapsed().as_secs_f64();
    if total != jobs {
        return Err(StoreError::Corrupt(format!("{total} jobs completed of {jobs}")));
    }
    println!("{:<10} {:>9} {:>6} {:>10.0} {:>9.2}", backend, instances, total, total as f64 / secs, secs);
    store.close().await;
    Ok(())
}

/// Two weeks of the demo clinic's slots booked, each with a due job.
async fn seed(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let actor = Actor::new("bench", Channel::System);
    let phone = E164::parse("+34600000001").map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let new = NewPatient {
        name: "Bench".into(),
        phones: vec![phone],
        date_of_birth: NaiveDate::from_ymd_opt(1960, 1, 1).expect("valid date"),
        national_id: None,
        preferred_language: "es".into(),
        contact_consent: true,
    };
    let patient = store.create_patient(new, &actor, now).await?.id;
    let mut jobs = 0;
    for p in store.providers(None).await? {
        let q = SlotQuery {
            provider: Some(p.id.clone()),
            from: NaiveDate::from_ymd_opt(2026, 11, 30),
            to: NaiveDate::from_ymd_opt(2026, 12, 13),
            limit: Some(500),
            ..Default::default()
        };
        for slot in store.free_slots(&q, now).await? {
            let new = NewAppointment {
                patient_id: patient.clone(),
                provider_id: slot.provider_id,
                starts_at: slot.starts_at,
                hold_token: None,
                notes: None,
            };
            let a = store.book(new, &actor, now).await?;
            if store.enqueue_job(KIND, &a.id, &patient, now, now).await?.is_some() {
                jobs += 1;
            }
        }
    }
    Ok(jobs)
}
