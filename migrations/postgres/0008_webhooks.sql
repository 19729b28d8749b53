-- Webhooks (issue 20): a durable outbox. An event is written in the same
-- transaction as the change it tells of, with one delivery row for each
-- configured webhook that wants it, so nothing is lost on a crash and
-- nothing is sent for a change that rolled back. Keep in step with
-- ../sqlite/0008_webhooks.sql.
--
-- payload holds ids and times only (never transcripts, names or numbers).
-- order_key is what deliveries are kept in order by (the appointment, call
-- or callback the event is about).
CREATE TABLE webhook_events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    order_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    event_seq BIGINT NOT NULL REFERENCES webhook_events(seq),
    webhook TEXT NOT NULL,
    order_key TEXT NOT NULL,
    status TEXT NOT NULL,              -- pending, delivered, failed
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    last_status BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries(webhook, order_key, event_seq);
