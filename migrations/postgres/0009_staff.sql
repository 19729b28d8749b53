-- The staff console (issue 18): staff accounts and their login sessions.
-- Keep in step with ../sqlite/0009_staff.sql.
--
-- password_hash is an argon2id PHC string; the password itself is never
-- stored. failed_logins counts wrong passwords since the last good one;
-- past the limit the account is locked until locked_until (seconds).
CREATE TABLE staff_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,                -- reception, manager, admin
    language TEXT,                     -- es, en, it, pt; NULL: the clinic's first
    password_hash TEXT NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- A session is known by the SHA-256 of its cookie's value: a copy of this
-- table logs nobody in. csrf is the token every form of the session must
-- carry. A session ends at expires_at, or after idle_until passes unused.
CREATE TABLE staff_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES staff_users(id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    idle_until BIGINT NOT NULL
);
CREATE INDEX staff_sessions_user ON staff_sessions(user_id);

-- The console's KPI page reads each of these by time.
CREATE INDEX audit_log_entity_at ON audit_log(entity, at);
CREATE INDEX reminders_sent ON reminders(sent_at);
CREATE INDEX jobs_updated ON jobs(status, updated_at);
CREATE INDEX callback_requests_created ON callback_requests(created_at);
CREATE INDEX appointments_status_starts ON appointments(status, starts_at);
CREATE INDEX calls_patient ON calls(patient_id, started_at);
-- The KPI page counts calls and replies' waits by day without reading the
-- rows themselves (transcripts, summaries): these indexes cover it.
CREATE INDEX calls_kpi ON calls(started_at, direction, language, outcome, transfer_target);
CREATE INDEX call_turns_latency ON call_turns(call_id, latency_ms);
CREATE INDEX call_turns_waits ON call_turns(at, latency_ms);

-- The KPI page's roll-ups: each closed clinic-local day's calls and
-- replies' waits, counted once (days since 1970-01-01 in the clinic's
-- zone). Counts, languages, outcomes and reasons ("wants: cancel") only:
-- nothing here names a patient, and the counts outlive purged calls.
CREATE TABLE kpi_closed_days (
    day BIGINT PRIMARY KEY,
    rolled_at BIGINT NOT NULL
);
CREATE TABLE kpi_call_days (
    day BIGINT NOT NULL,
    direction TEXT NOT NULL,
    language TEXT,
    outcome TEXT,
    transferred BIGINT NOT NULL,
    reason TEXT,
    n BIGINT NOT NULL
);
CREATE INDEX kpi_call_days_day ON kpi_call_days(day);
-- histogram: "bin:count,…", the waits' counts in 50 ms bins, one row
-- per day and language.
CREATE TABLE kpi_wait_days (
    day BIGINT NOT NULL,
    language TEXT,
    histogram TEXT NOT NULL
);
CREATE INDEX kpi_wait_days_day ON kpi_wait_days(day);
