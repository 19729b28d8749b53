//! The clinic's structure — specialties, providers, weekly templates and
//! closures — mirrored from configuration into the database at start-up so
//! that slot queries and foreign keys see one truth.

use chrono::{NaiveDate, Timelike};
use sqlx::Row;

use super::availability::{Closure, Shift};
use super::{Provider, Result, Specialty, Store, StoreError};
use crate::config::Config;

impl Store {
    /// Upserts specialties and providers from `config`, replaces the weekly
    /// templates and clinic-wide holidays. Providers no longer configured are
    /// deactivated, not deleted: their past appointments still point at them.
    pub async fn sync_clinic(&self, config: &Config) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for s in &config.specialties {
            let names = serde_json::to_string(&s.names).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("INSERT INTO specialties (id, names) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET names = excluded.names")
                .bind(&s.id)
                .bind(names)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE providers SET active = 0").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM provider_hours").execute(&mut *tx).await?;
        for p in &config.providers {
            sqlx::query(
                "INSERT INTO providers (id, name, specialty_id, slot_minutes, active) VALUES ($1, $2, $3, $4, 1) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, specialty_id = excluded.specialty_id, \
                 slot_minutes = excluded.slot_minutes, active = 1",
            )
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.specialty)
            .bind(p.slot_minutes)
            .execute(&mut *tx)
            .await?;
            for (weekday, ranges) in p.schedule.0.iter().enumerate() {
                for r in ranges {
                    let minute = |t: chrono::NaiveTime| i64::from(t.hour() * 60 + t.minute());
                    sqlx::query("INSERT INTO provider_hours (provider_id, weekday, start_minute, end_minute) VALUES ($1, $2, $3, $4)")
                        .bind(&p.id)
                        .bind(weekday as i64)
                        .bind(minute(r.start))
                        .bind(minute(r.end))
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        sqlx::query("DELETE FROM availability_exceptions WHERE provider_id IS NULL AND reason = 'holiday'").execute(&mut *tx).await?;
        for day in &config.clinic.holidays {
            let d = day.format("%Y-%m-%d").to_string();
            sqlx::query(
                "INSERT INTO availability_exceptions (id, provider_id, starts_on, ends_on, reason) VALUES ($1, NULL, $2, $2, 'holiday')",
            )
            .bind(format!("holiday-{d}"))
            .bind(&d)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn specialties(&self) -> Result<Vec<Specialty>> {
        let rows = sqlx::query("SELECT id, names FROM specialties ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let names: String = r.try_get("names")?;
                Ok(Specialty { id: r.try_get("id")?, names: serde_json::from_str(&names).map_err(|e| StoreError::Corrupt(e.to_string()))? })
            })
            .collect()
    }

    /// Active providers, optionally of one specialty.
    pub async fn providers(&self, specialty: Option<&str>) -> Result<Vec<Provider>> {
        let rows = sqlx::query(
            "SELECT id, name, specialty_id, slot_minutes FROM providers \
             WHERE active = 1 AND ($1 IS NULL OR specialty_id = $1) ORDER BY id",
        )
        .bind(specialty)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Provider {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    specialty_id: r.try_get("specialty_id")?,
                    slot_minutes: r.try_get("slot_minutes")?,
                })
            })
            .collect()
    }

    pub async fn provider(&self, id: &str) -> Result<Provider> {
        self.providers(None).await?.into_iter().find(|p| p.id == id).ok_or(StoreError::NotFound("provider"))
    }

    /// Records an absence (vacation, congress, sick leave) of one provider.
    pub async fn add_absence(&self, provider_id: &str, from: NaiveDate, to: NaiveDate, reason: &str) -> Result<()> {
        if to < from {
            return Err(StoreError::invalid("to", "ends before it starts"));
        }
        self.provider(provider_id).await?;
        sqlx::query("INSERT INTO availability_exceptions (id, provider_id, starts_on, ends_on, reason) VALUES ($1, $2, $3, $4, $5)")
            .bind(super::new_id())
            .bind(provider_id)
            .bind(from.format("%Y-%m-%d").to_string())
            .bind(to.format("%Y-%m-%d").to_string())
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn shifts(&self, provider_id: &str) -> Result<Vec<Shift>> {
        let rows = sqlx::query("SELECT weekday, start_minute, end_minute FROM provider_hours WHERE provider_id = $1")
            .bind(provider_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let get = |c: &str| -> Result<u32> {
                    let v: i64 = r.try_get(c)?;
                    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("provider_hours.{c} = {v}")))
                };
                Ok(Shift { weekday: get("weekday")?, start_minute: get("start_minute")?, end_minute: get("end_minute")? })
            })
            .collect()
    }

    /// Clinic holidays plus the provider's own absences.
    pub(super) async fn closures(&self, provider_id: &str) -> Result<Vec<Closure>> {
        let rows = sqlx::query("SELECT starts_on, ends_on FROM availability_exceptions WHERE provider_id IS NULL OR provider_id = $1")
            .bind(provider_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let date = |c: &str| -> Result<NaiveDate> {
                    let s: String = r.try_get(c)?;
                    NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| StoreError::Corrupt(format!("date {s:?}")))
                };
                Ok(Closure { starts_on: date("starts_on")?, ends_on: date("ends_on")? })
            })
            .collect()
    }
}
