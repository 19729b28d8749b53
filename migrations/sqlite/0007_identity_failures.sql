-- Failed identity checks on the phone, counted across calls, so a stranger
-- cannot guess a patient's date of birth one call at a time. Keep in step
-- with ../postgres/0007_identity_failures.sql.
--
-- subject is 'patient:<id>' or 'phone:<SHA-256 of the E.164 number, hex>':
-- the number itself is not kept here. Rows older than the lockout window
-- mean nothing and are purged with the other data past its time.
CREATE TABLE identity_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX identity_failures_subject ON identity_failures(subject, at);
