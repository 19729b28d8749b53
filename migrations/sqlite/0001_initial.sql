-- Clinivox schema (SQLite). Times are UTC seconds since the epoch; dates are
-- clinic-local 'YYYY-MM-DD'. Keep in step with ../postgres/0001_initial.sql.

CREATE TABLE specialties (
    id TEXT PRIMARY KEY,
    names TEXT NOT NULL              -- JSON: language -> spoken names
);

CREATE TABLE providers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    specialty_id TEXT NOT NULL REFERENCES specialties(id),
    slot_minutes BIGINT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1
);

-- Weekly template: minutes since local midnight.
CREATE TABLE provider_hours (
    provider_id TEXT NOT NULL REFERENCES providers(id),
    weekday BIGINT NOT NULL,         -- 0 = Monday
    start_minute BIGINT NOT NULL,
    end_minute BIGINT NOT NULL
);
CREATE INDEX provider_hours_provider ON provider_hours(provider_id);

-- Holidays (provider_id NULL: the whole clinic) and absences.
CREATE TABLE availability_exceptions (
    id TEXT PRIMARY KEY,
    provider_id TEXT REFERENCES providers(id),
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL,
    reason TEXT NOT NULL
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    national_id TEXT,
    preferred_language TEXT NOT NULL,
    contact_consent BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE patient_phones (
    patient_id TEXT NOT NULL REFERENCES patients(id),
    phone TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (patient_id, phone)
);
CREATE INDEX patient_phones_phone ON patient_phones(phone);

CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    provider_id TEXT NOT NULL REFERENCES providers(id),
    specialty_id TEXT NOT NULL REFERENCES specialties(id),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    notes TEXT,
    created_by TEXT NOT NULL,
    created_channel TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_channel TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The database, not the application, guarantees one live appointment per slot.
CREATE UNIQUE INDEX appointments_live_slot ON appointments(provider_id, starts_at)
    WHERE status IN ('booked', 'confirmed');
CREATE INDEX appointments_patient ON appointments(patient_id);
CREATE INDEX appointments_starts ON appointments(starts_at);

-- Short reservations of a slot (offered on the phone); also the row lock that
-- serialises concurrent bookings of one slot.
CREATE TABLE slot_holds (
    provider_id TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    token TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (provider_id, starts_at)
);

CREATE TABLE waitlist (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    specialty_id TEXT NOT NULL REFERENCES specialties(id),
    provider_id TEXT REFERENCES providers(id),
    earliest TEXT NOT NULL,
    latest TEXT NOT NULL,
    notes TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    remote_number TEXT NOT NULL,
    patient_id TEXT REFERENCES patients(id),
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    language TEXT,
    outcome TEXT,
    transfer_target TEXT,
    summary TEXT
);
CREATE INDEX calls_started ON calls(started_at);

CREATE TABLE call_turns (
    call_id TEXT NOT NULL REFERENCES calls(id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    confidence DOUBLE PRECISION,
    intent TEXT,
    latency_ms BIGINT,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_entity ON audit_log(entity, entity_id);

CREATE TABLE idempotency_keys (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,          -- 0 while the first request is in flight
    body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor, key)
);
