-- Reminders sent by the clinic's messaging tool, and the job queue that calls
-- back patients who did not answer them. Same DDL on SQLite and PostgreSQL.

CREATE TABLE reminders (
    id TEXT PRIMARY KEY,
    appointment_id TEXT NOT NULL REFERENCES appointments(id),
    channel TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    external_id TEXT,
    reply TEXT,
    reply_text TEXT,
    replied_at BIGINT,
    created_at BIGINT NOT NULL
);
-- The sending tool's own id makes a re-sent notification a no-op.
CREATE UNIQUE INDEX reminders_external ON reminders(channel, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX reminders_appointment ON reminders(appointment_id);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    appointment_id TEXT NOT NULL REFERENCES appointments(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    due_at BIGINT NOT NULL,
    status TEXT NOT NULL,             -- pending, running, done, cancelled
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    last_outcome TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- At most one open job of a kind per appointment.
CREATE UNIQUE INDEX jobs_open ON jobs(kind, appointment_id) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_due ON jobs(status, due_at);

CREATE TABLE job_attempts (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    attempt BIGINT NOT NULL,
    instance TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    outcome TEXT,
    PRIMARY KEY (job_id, attempt)
);
