-- A status webhook in one round trip (it took three: BEGIN with the tenant, the update, COMMIT). Called
-- outside any explicit transaction by the application role: the tenant is set first, inside the function, so
-- row-level security confines every statement after it, and the setting ends with the statement's own
-- transaction. NULL when no reply of the organisation has that WhatsApp id (yet); else whether it moved.
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
