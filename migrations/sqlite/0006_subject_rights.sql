-- Data-subject rights (GDPR Art. 15, 17) and the access audit. Keep in step
-- with ../postgres/0006_subject_rights.sql.

-- Set when the patient's data was erased. The row stays, emptied, because
-- their past appointments and calls keep counting in the clinic's figures
-- (date_of_birth is NOT NULL, so it holds a placeholder, '0001-01-01').
ALTER TABLE patients ADD COLUMN erased_at BIGINT;

-- Who read whose data through the API, and when. Nothing identifying is
-- kept here: the token's configured name, the patient's id, the route as
-- a template (query parameter names, never their values) and the id of
-- the record read. No foreign key: the log outlives what it mentions.
CREATE TABLE access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_id TEXT
);
CREATE INDEX access_log_patient ON access_log(patient_id, at);
