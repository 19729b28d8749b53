-- Offers of a freed slot to waiting-list patients, one at a time.
CREATE TABLE refill_offers (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    waitlist_id TEXT NOT NULL REFERENCES waitlist(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    offered_at BIGINT NOT NULL,
    outcome TEXT,
    PRIMARY KEY (job_id, waitlist_id)
);
