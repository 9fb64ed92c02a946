-- A reply's WhatsApp status, advanced in one round trip by the sender (sent) and by status webhooks
-- (delivered, read, failed). Monotonic: queued < sent < delivered < read; failed is terminal, so a late
-- 'delivered' never overwrites 'read'. A broadcast's counters count every stage passed, so a skipped
-- 'delivered' is still counted. True when the status moved.
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
        UPDATE broadcasts SET
            sent_count = sent_count + (p_new <> 'failed' AND old_rank < 2 AND new_rank >= 2)::int,
            delivered_count = delivered_count + (p_new <> 'failed' AND old_rank < 3 AND new_rank >= 3)::int,
            read_count = read_count + (p_new <> 'failed' AND old_rank < 4 AND new_rank >= 4)::int,
            failed_count = failed_count + (p_new = 'failed')::int
        WHERE id = m.broadcast_id;
        UPDATE broadcast_recipients SET status = p_new WHERE message_id = p_message;
    END IF;
    RETURN true;
END
$$;
