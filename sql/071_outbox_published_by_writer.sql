-- Issue 16: one broker hop less per reply. The inbound worker that writes a conversation's reply publishes it to
-- the outbound queue itself, after its transaction committed and before it acks the event; the relay never
-- sees such a row, because it is written already marked (relayed_at set at insert: it never enters the
-- partial indexes of unrelayed rows, and no UPDATE marks it afterwards).
--
-- The safety net is the event itself: it is acked only after the publish was confirmed, so a worker that died
-- or lost the broker between its commit and the confirm gets the event again (in its contact's order: the
-- queue's head); the event is then a duplicate (processed_events) and its rows, found by event_key, are
-- published again. The sender drops a reply that already has a WhatsApp id, so a second copy sends nothing.
-- Rows written by anything else (broadcasts, handovers, admin notices, held replies) keep event_key NULL and go
-- through the relay as before.
ALTER TABLE outbox ADD COLUMN event_key TEXT;  -- processed_events' source and external id, 'source:id'
CREATE INDEX idx_outbox_event ON outbox(organization_id, event_key) WHERE event_key IS NOT NULL;
