-- The staff console's Callbacks page lists the requests done most recently.
-- Keep in step with ../sqlite/0010_console_reads.sql.
CREATE INDEX callback_requests_done ON callback_requests(status, done_at);
