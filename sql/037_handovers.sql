-- Human handover (state_machines/handover.py, engine/handovers.py, docs/handover.md): a conversation handed to
-- the organisation's agents. One open handover per conversation; the API lists the queue, assigns, replies and
-- closes. Opening one records the handover.requested webhook event (sql/036) in the same transaction.

CREATE TABLE handovers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    status VARCHAR(20) NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'assigned', 'closed')),
    reason VARCHAR(20) NOT NULL DEFAULT 'keyword' CHECK (reason IN ('keyword', 'knowledge', 'module')),
    request_text TEXT,
    assigned_to VARCHAR(255),
    assigned_at TIMESTAMPTZ,
    first_reply_at TIMESTAMPTZ,
    agent_replies INTEGER NOT NULL DEFAULT 0,
    closed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE UNIQUE INDEX uq_handovers_open ON handovers(conversation_id) WHERE status <> 'closed';
CREATE INDEX idx_handovers_queue ON handovers(organization_id, created_at) WHERE status <> 'closed';
SELECT tenant_table('handovers');

CREATE FUNCTION webhook_handover() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF webhook_wanted(NEW.organization_id, 'handover.requested') THEN
        PERFORM webhook_emit(NEW.organization_id, 'handover.requested', jsonb_build_object(
            'handover_id', NEW.id, 'reason', NEW.reason, 'text', NEW.request_text,
            'contact', webhook_contact(NEW.contact_id)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_handover AFTER INSERT ON handovers
    FOR EACH ROW EXECUTE FUNCTION webhook_handover();
