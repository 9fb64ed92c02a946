-- Calls that do their work in one round trip, outside any explicit transaction (BEGIN with the tenant, the
-- work, COMMIT took three). Each sets the tenant first, inside the function, so row-level security confines
-- every statement after it as it does a transaction that engine/db.tenant_transaction opened (the caller is
-- the application role), and the setting ends with the call's own transaction.

-- A status webhook. NULL when no reply of the organisation has that WhatsApp id (yet); else whether it moved.
CREATE OR REPLACE FUNCTION apply_status_webhook(p_org uuid, p_wa_message_id text, p_new text,
                                                p_at timestamptz DEFAULT NULL, p_code int DEFAULT NULL,
                                                p_title text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    target uuid;
BEGIN
    PERFORM set_config('app.current_org', p_org::text, true);
    SELECT id INTO target FROM messages
    WHERE organization_id = p_org AND wa_message_id = p_wa_message_id AND direction = 'outbound';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN advance_message_status(target, p_new, p_at, p_code, p_title);
END
$$;

-- The sender's check before it sends: true while the reply has been neither accepted by WhatsApp nor failed.
CREATE OR REPLACE FUNCTION reply_unsent(p_org uuid, p_message uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('app.current_org', p_org::text, true);
    RETURN EXISTS (SELECT FROM messages
                   WHERE id = p_message AND wa_message_id IS NULL AND wa_status IS DISTINCT FROM 'failed');
END
$$;

-- The sender's record after WhatsApp accepted a reply: its id, then its status advanced to sent (a status
-- webhook may already be ahead: advance_message_status keeps the later one).
CREATE OR REPLACE FUNCTION record_reply_sent(p_org uuid, p_message uuid, p_wa_message_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('app.current_org', p_org::text, true);
    UPDATE messages SET wa_message_id = p_wa_message_id WHERE id = p_message;
    PERFORM advance_message_status(p_message, 'sent');
END
$$;
