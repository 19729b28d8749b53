-- Call records: the appointment an outbound call was about (escalation
-- attempts, answered or not), and where the call's audio was recorded
-- (`[calls] record_audio`; NULL when recording is off).
ALTER TABLE calls ADD COLUMN appointment_id TEXT REFERENCES appointments(id);
ALTER TABLE calls ADD COLUMN recording_path TEXT;
CREATE INDEX calls_appointment ON calls(appointment_id);
