-- Broadcasts (issue 15): what the seed's broadcasts and broadcast_recipients lacked to run one exactly once.
--
-- Life of a broadcast: scheduled (created; due at scheduled_at) -> running (recipients resolved and tokens
-- reserved, in one transaction) -> completed (every recipient queued or skipped; the unused reservation
-- released). paused holds the fan-out (the reservation stays); cancelled stops it and releases; blocked did
-- not start (status_reason says why, e.g. the wallet cannot cover it) and is tried again on resume.

ALTER TABLE broadcasts
    ADD COLUMN template_params JSONB NOT NULL DEFAULT '[]',   -- body parameters, {{name}} etc. per recipient
    ADD COLUMN template_category VARCHAR(20),                  -- marketing | utility | authentication
    ADD COLUMN event_id UUID REFERENCES events(id),             -- {{event}} and {{event_time}}; audience too
    ADD COLUMN source VARCHAR(20) NOT NULL DEFAULT 'operator'
        CHECK (source IN ('operator', 'programme', 'reminder')),
    ADD COLUMN source_key VARCHAR(200),                         -- a programme item's or reminder's firing
    ADD COLUMN status_reason TEXT,
    ADD COLUMN queued_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN skipped_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN price_text INTEGER,                              -- fixed at start: what a recipient costs
    ADD COLUMN price_template INTEGER,
    ADD COLUMN tokens_reserved INTEGER NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
    ADD COLUMN tokens_spent INTEGER NOT NULL DEFAULT 0 CHECK (tokens_spent >= 0),
    ADD COLUMN tokens_released INTEGER NOT NULL DEFAULT 0 CHECK (tokens_released >= 0),
    ADD COLUMN paused_at TIMESTAMPTZ,
    ADD COLUMN cancelled_at TIMESTAMPTZ,
    ADD COLUMN created_by VARCHAR(100),
    ADD CONSTRAINT broadcasts_reservation CHECK (tokens_spent + tokens_released <= tokens_reserved);
UPDATE broadcasts SET status = 'scheduled' WHERE status NOT IN
    ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'blocked');
ALTER TABLE broadcasts ADD CONSTRAINT broadcasts_status
    CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'blocked'));
-- A programme item's or a reminder's firing makes one broadcast, however many schedulers see it due.
CREATE UNIQUE INDEX uq_broadcasts_source_key ON broadcasts(organization_id, source_key)
    WHERE source_key IS NOT NULL;
CREATE INDEX idx_broadcasts_due ON broadcasts(scheduled_at) WHERE status = 'scheduled';
CREATE INDEX idx_broadcasts_running ON broadcasts(id) WHERE status = 'running';

ALTER TABLE broadcast_recipients
    ADD COLUMN position INTEGER NOT NULL DEFAULT 0,     -- fan-out order (contacts in the order they came)
    ADD COLUMN kind VARCHAR(10) CHECK (kind IN ('text', 'template')),
    ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    ADD COLUMN skip_reason VARCHAR(40),                 -- opted_out, outside_window, no_consent, template_*
    ADD COLUMN queued_at TIMESTAMPTZ;
CREATE INDEX idx_broadcast_recipients_pending ON broadcast_recipients(broadcast_id, position)
    WHERE status = 'pending';
CREATE INDEX idx_broadcast_recipients_queued ON broadcast_recipients(broadcast_id) WHERE status = 'queued';
CREATE INDEX idx_broadcast_recipients_message ON broadcast_recipients(message_id) WHERE message_id IS NOT NULL;

-- sql/014's status advance, with the recipient's error code kept (failures by code) and the broadcast's shared
-- row updated last, just before the one-statement transaction commits.
CREATE OR REPLACE FUNCTION advance_message_status(p_message uuid, p_new text, p_at timestamptz DEFAULT NULL,
                                                  p_code int DEFAULT NULL, p_title text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    stages CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read'];
    m record;
    old text;
    old_rank int;
    new_rank int;
    at timestamptz := COALESCE(p_at, now());
BEGIN
    IF p_new <> 'failed' AND array_position(stages, p_new) IS NULL THEN
        RAISE EXCEPTION 'unknown message status %', p_new USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT wa_status, broadcast_id INTO m FROM messages WHERE id = p_message FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    old := COALESCE(m.wa_status, 'queued');
    old_rank := array_position(stages, old);
    new_rank := array_position(stages, p_new);
    IF old = 'failed' OR (p_new <> 'failed' AND new_rank <= old_rank) THEN
        RETURN false;
    END IF;
    UPDATE messages SET wa_status = p_new,
                        sent_at = CASE WHEN p_new = 'sent' THEN at ELSE sent_at END,
                        delivered_at = CASE WHEN p_new = 'delivered' THEN at ELSE delivered_at END,
                        read_at = CASE WHEN p_new = 'read' THEN at ELSE read_at END,
                        failed_at = CASE WHEN p_new = 'failed' THEN at ELSE failed_at END,
                        error_code = COALESCE(p_code, error_code),
                        error_title = COALESCE(p_title, error_title)
    WHERE id = p_message;
    IF m.broadcast_id IS NOT NULL THEN
        UPDATE broadcast_recipients SET status = p_new, error_code = COALESCE(p_code, error_code)
        WHERE message_id = p_message;
        UPDATE broadcasts SET
            sent_count = sent_count + (p_new <> 'failed' AND old_rank < 2 AND new_rank >= 2)::int,
            delivered_count = delivered_count + (p_new <> 'failed' AND old_rank < 3 AND new_rank >= 3)::int,
            read_count = read_count + (p_new <> 'failed' AND old_rank < 4 AND new_rank >= 4)::int,
            failed_count = failed_count + (p_new = 'failed')::int
        WHERE id = m.broadcast_id;
    END IF;
    RETURN true;
END
$$;
