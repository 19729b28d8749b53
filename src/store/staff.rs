//! Staff accounts and their console sessions (issue 18). The store keeps
//! what a login needs and nothing it can be replayed with: argon2 hashes
//! (made by `console::password`), the SHA-256 of each session cookie, and
//! the counts behind the lockout. Kept in the database, not in memory, so
//! that a second node (issue 19) knows the same sessions and lockouts.

use chrono::{DateTime, Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{is_unique_violation, new_id, ts, Actor, Result, Store, StoreError};

/// What a staff member may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The day's calls, callbacks and appointments.
    Reception,
    /// Reception's pages and the clinic's figures.
    Manager,
    /// Everything, staff accounts included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reception, Role::Manager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reception => "reception",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaffUser {
    pub id: String,
    /// What they log in with (lower case).
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// Their console language; `None`: the clinic's first.
    pub language: Option<String>,
    /// argon2id, PHC string format.
    pub password_hash: String,
    pub failed_logins: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub disabled: bool,
    /// The `[[staff]]` extension their click-to-call rings first.
    pub extension: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewStaffUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub language: Option<String>,
    pub password_hash: String,
    /// Their desk phone's `[[staff]]` extension, for click-to-call.
    pub extension: Option<String>,
}

/// A logged-in session, found by its cookie.
#[derive(Debug, Clone, PartialEq)]
pub struct StaffSession {
    pub user: StaffUser,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionTimes {
    /// From login, whatever the use.
    pub lifetime: Duration,
    /// Unused for this long, it ends.
    pub idle: Duration,
}

/// What a wrong password did to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; `left` more before the lock.
    Counted { left: i64 },
    /// This one locked the account until then.
    Locked(DateTime<Utc>),
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, language, password_hash, failed_logins, locked_until, disabled, extension, created_at";
/// Longest extension accepted.
const MAX_EXTENSION: usize = 32;
/// Longest user name and display name accepted.
const MAX_NAME: usize = 100;

impl Store {
    /// Adds a staff account, with an audit entry; a taken user name is a conflict.
    pub async fn create_staff_user(&self, new: NewStaffUser, actor: &Actor, now: DateTime<Utc>) -> Result<StaffUser> {
        let username = new.username.trim().to_lowercase();
        if username.is_empty()
            || username.len() > MAX_NAME
            || !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        {
            return Err(StoreError::invalid("username", "1 to 100 of a-z, 0-9 and . _ - @"));
        }
        let display_name = new.display_name.trim().to_string();
        if display_name.is_empty() || display_name.chars().count() > MAX_NAME || display_name.chars().any(char::is_control) {
            return Err(StoreError::invalid("display_name", "1 to 100 characters, none of them control characters"));
        }
        let extension = valid_extension(new.extension.as_deref())?;
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO staff_users (id, username, display_name, role, language, password_hash, failed_logins, disabled, extension, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $8)",
        )
        .bind(&id)
        .bind(&username)
        .bind(&display_name)
        .bind(new.role.as_str())
        .bind(&new.language)
        .bind(&new.password_hash)
        .bind(extension)
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict(format!("the user name {username} is taken"))),
            r => r?,
        };
        let after = format!("{username} ({})", new.role.as_str());
        Store::audit(&mut tx, now, actor, "staff_user", &id, "created", None, Some(after)).await?;
        tx.commit().await?;
        self.staff_user(&id).await
    }

    pub async fn staff_user(&self, id: &str) -> Result<StaffUser> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM staff_users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("staff user"))?;
        user_from_row(&row)
    }

    pub async fn staff_user_by_name(&self, username: &str) -> Result<Option<StaffUser>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM staff_users WHERE username = $1"))
            .bind(username.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every account, by user name.
    pub async fn staff_users(&self) -> Result<Vec<StaffUser>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM staff_users ORDER BY username")).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// A wrong password: counted, and past `max` failures in a row the
    /// account is locked for `lock_for` (and its count starts again).
    pub async fn staff_login_failed(&self, id: &str, max: i64, lock_for: Duration, now: DateTime<Utc>) -> Result<Failure> {
        let mut tx = self.pool.begin().await?;
        let failed: i64 = sqlx::query("UPDATE staff_users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("staff user"))?
            .try_get("failed_logins")?;
        let outcome = if failed >= max {
            let until = now + lock_for;
            sqlx::query("UPDATE staff_users SET failed_logins = 0, locked_until = $2 WHERE id = $1")
                .bind(id)
                .bind(until.timestamp())
                .execute(&mut *tx)
                .await?;
            let system = Actor::new("console", super::Channel::System);
            Store::audit(&mut tx, now, &system, "staff_user", id, "locked", None, Some(format!("after {failed} failed logins"))).await?;
            Failure::Locked(until)
        } else {
            Failure::Counted { left: max - failed }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// A good password: the failure count starts again.
    pub async fn staff_login_succeeded(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE staff_users SET failed_logins = 0, locked_until = NULL WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// A new password (its hash): every session of the account ends.
    pub async fn set_staff_password(&self, id: &str, password_hash: &str, actor: &Actor, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query("UPDATE staff_users SET password_hash = $2, failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("staff user"));
        }
        sqlx::query("DELETE FROM staff_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        Store::audit(&mut tx, now, actor, "staff_user", id, "password_set", None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Disables an account (every session of it ends at once) or enables it
    /// again; audited. Nothing is deleted: who did what stays attributable.
    pub async fn set_staff_disabled(&self, id: &str, disabled: bool, actor: &Actor, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query("UPDATE staff_users SET disabled = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(disabled))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("staff user"));
        }
        if disabled {
            sqlx::query("DELETE FROM staff_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        }
        let action = if disabled { "disabled" } else { "enabled" };
        Store::audit(&mut tx, now, actor, "staff_user", id, action, None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The desk phone (a `[[staff]]` extension) a staff member's
    /// click-to-call rings; `None` clears it. Audited.
    pub async fn set_staff_extension(&self, id: &str, extension: Option<&str>, actor: &Actor, now: DateTime<Utc>) -> Result<()> {
        let extension = valid_extension(extension)?;
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query("UPDATE staff_users SET extension = $2 WHERE id = $1")
            .bind(id)
            .bind(extension)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("staff user"));
        }
        Store::audit(&mut tx, now, actor, "staff_user", id, "extension_set", None, extension.map(str::to_string)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The console language a staff member chose (`None`: the clinic's first).
    pub async fn set_staff_language(&self, id: &str, language: Option<&str>) -> Result<()> {
        let changed = sqlx::query("UPDATE staff_users SET language = $2 WHERE id = $1").bind(id).bind(language).execute(&self.pool).await?;
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound("staff user"));
        }
        Ok(())
    }

    /// Starts a session known by `token_hash` (the SHA-256 of its cookie).
    pub async fn create_staff_session(
        &self,
        user_id: &str,
        token_hash: &str,
        csrf: &str,
        times: SessionTimes,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // Ended sessions are removed as new ones start: the table holds live ones only.
        sqlx::query("DELETE FROM staff_sessions WHERE expires_at <= $1 OR idle_until <= $1")
            .bind(now.timestamp())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO staff_sessions (token_hash, user_id, csrf, created_at, expires_at, idle_until) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(now.timestamp())
        .bind((now + times.lifetime).timestamp())
        .bind((now + times.idle).timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session behind `token_hash`, its idle time started again
    /// when `activity` (a page the user asked for, not a page's own
    /// polling); `None` when there is none, it ended, or its account is disabled.
    pub async fn staff_session(
        &self,
        token_hash: &str,
        times: SessionTimes,
        now: DateTime<Utc>,
        activity: bool,
    ) -> Result<Option<StaffSession>> {
        let row = sqlx::query("SELECT user_id, csrf, expires_at, idle_until FROM staff_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (expires, idle): (i64, i64) = (row.try_get("expires_at")?, row.try_get("idle_until")?);
        if expires <= now.timestamp() || idle <= now.timestamp() {
            self.end_staff_session(token_hash).await?;
            return Ok(None);
        }
        let user = self.staff_user(&row.try_get::<String, _>("user_id")?).await?;
        if user.disabled {
            return Ok(None);
        }
        if activity {
            let idle_until = (now + times.idle).timestamp().min(expires);
            sqlx::query("UPDATE staff_sessions SET idle_until = $2 WHERE token_hash = $1")
                .bind(token_hash)
                .bind(idle_until)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(StaffSession { user, csrf: row.try_get("csrf")?, expires_at: ts(expires)? }))
    }

    pub async fn end_staff_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM staff_sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }
}

fn user_from_row(r: &AnyRow) -> Result<StaffUser> {
    let role: String = r.try_get("role")?;
    Ok(StaffUser {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("staff role {role:?}")))?,
        language: r.try_get("language")?,
        password_hash: r.try_get("password_hash")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get::<Option<i64>, _>("locked_until")?.map(ts).transpose()?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        extension: r.try_get("extension")?,
        created_at: ts(r.try_get("created_at")?)?,
    })
}

/// An extension as stored: trimmed, 1 to 32 of 0-9, a-z, A-Z, `*`, `#`,
/// `+`, `.`, `_`, `-`; empty is none.
fn valid_extension(extension: Option<&str>) -> Result<Option<&str>> {
    let Some(x) = extension.map(str::trim).filter(|x| !x.is_empty()) else { return Ok(None) };
    if x.len() > MAX_EXTENSION || !x.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '#' | '+' | '.' | '_' | '-')) {
        return Err(StoreError::invalid("extension", "1 to 32 of 0-9, a-z, * # + . _ -"));
    }
    Ok(Some(x))
}
