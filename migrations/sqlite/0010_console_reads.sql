-- The staff console: the requests done most recently (the Callbacks page),
-- and the desk phone of each account (click-to-call).
-- Keep in step with ../postgres/0010_console_reads.sql.
CREATE INDEX callback_requests_done ON callback_requests(status, done_at);

-- The [[staff]] extension a console user's click-to-call rings first; NULL: none.
ALTER TABLE staff_users ADD COLUMN extension TEXT;
