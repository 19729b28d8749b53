-- Callback requests taken by the assistant when nobody could take the call
-- (out of hours, or the transfer was not answered), and per-turn timings.
CREATE TABLE callback_requests (
    id TEXT PRIMARY KEY,
    call_id TEXT REFERENCES calls(id),
    patient_id TEXT REFERENCES patients(id),
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    reason TEXT NOT NULL,
    language TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    promised TEXT NOT NULL,          -- clinic-local 'YYYY-MM-DD HH:MM' we said we would call from
    status TEXT NOT NULL,            -- open | done
    done_at BIGINT,
    done_by TEXT
);
CREATE INDEX callback_requests_status ON callback_requests(status, created_at);

-- End of the caller's speech → transcript, for assistant turns (latency_ms is
-- end of speech → first reply audio sent).
ALTER TABLE call_turns ADD COLUMN transcript_ms BIGINT;
