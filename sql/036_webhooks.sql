-- Event webhooks out to the CRM (engine/webhooks.py, docs/api.md "Event webhooks").
-- An organisation registers endpoints with the event types it wants. An event is recorded by a trigger in the
-- transaction of the change itself (a survey completed, a ticket issued…), with one delivery row per endpoint
-- that wants it; nothing is recorded when no endpoint does (one indexed probe). The relay role delivers the rows
-- (claimed with SKIP LOCKED, a lease while in flight), retrying with backoff: at least once, never inside a
-- conversation's transaction.

CREATE TABLE webhook_endpoints (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    event_types TEXT[] NOT NULL,
    secret TEXT NOT NULL,                     -- the HMAC key: shown once at registration, never listed
    description VARCHAR(255),
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_webhook_endpoints_org ON webhook_endpoints(organization_id) WHERE active;
SELECT tenant_table('webhook_endpoints');

CREATE TABLE webhook_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),  -- the event id the receiver dedupes by
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    type VARCHAR(50) NOT NULL,
    data JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_webhook_events_org ON webhook_events(organization_id, created_at);
SELECT tenant_table('webhook_events');

CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    event_id UUID NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    endpoint_id UUID NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),  -- while in flight: the end of the sender's lease
    last_status_code INTEGER,
    last_error TEXT,
    delivered_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);
SELECT tenant_table('webhook_deliveries');

-- Whether any active endpoint of the organisation wants events of the type (the triggers ask first, so an
-- organisation without endpoints pays one index probe per change and nothing else).
CREATE FUNCTION webhook_wanted(p_org uuid, p_type text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT FROM webhook_endpoints
                   WHERE organization_id = p_org AND active AND p_type = ANY(event_types))
$$;

-- Record an event for the endpoints that want it (the caller's transaction, the caller's rights).
CREATE FUNCTION webhook_emit(p_org uuid, p_type text, p_data jsonb) RETURNS void
LANGUAGE sql AS $$
    WITH targets AS (
        SELECT id FROM webhook_endpoints
        WHERE organization_id = p_org AND active AND p_type = ANY(event_types)
    ), event AS (
        INSERT INTO webhook_events (organization_id, type, data)
        SELECT p_org, p_type, p_data WHERE EXISTS (SELECT FROM targets)
        RETURNING id
    )
    INSERT INTO webhook_deliveries (organization_id, event_id, endpoint_id)
    SELECT p_org, event.id, targets.id FROM event, targets
$$;

CREATE FUNCTION webhook_contact(p_contact uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', id, 'phone', phone, 'name', name) FROM contacts WHERE id = p_contact
$$;

-- survey.completed
CREATE FUNCTION webhook_survey_response() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'completed')
       AND webhook_wanted(NEW.organization_id, 'survey.completed') THEN
        PERFORM webhook_emit(NEW.organization_id, 'survey.completed', jsonb_build_object(
            'survey_id', NEW.survey_id, 'response_id', NEW.id, 'contact', webhook_contact(NEW.contact_id),
            'answers', NEW.answers, 'completed_at', NEW.completed_at));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_survey AFTER INSERT OR UPDATE OF status ON survey_responses
    FOR EACH ROW EXECUTE FUNCTION webhook_survey_response();

-- ticket.issued, ticket.checked_in
CREATE FUNCTION webhook_ticket() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    info jsonb;
    issued boolean := TG_OP = 'INSERT' AND webhook_wanted(NEW.organization_id, 'ticket.issued');
    checked_in boolean := NEW.checked_in_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.checked_in_at IS NULL)
                          AND webhook_wanted(NEW.organization_id, 'ticket.checked_in');
BEGIN
    IF NOT (issued OR checked_in) THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_build_object('ticket_id', NEW.id, 'ticket_code', NEW.ticket_code, 'event_id', tt.event_id,
                              'ticket_type_id', NEW.ticket_type_id, 'ticket_type', tt.name,
                              'holder_name', NEW.holder_name, 'contact', webhook_contact(NEW.contact_id))
    INTO info FROM ticket_types tt WHERE tt.id = NEW.ticket_type_id;
    IF issued THEN
        PERFORM webhook_emit(NEW.organization_id, 'ticket.issued',
                             info || jsonb_build_object('amount_paid', NEW.amount_paid));
    END IF;
    IF checked_in THEN
        PERFORM webhook_emit(NEW.organization_id, 'ticket.checked_in',
                             info || jsonb_build_object('checked_in_at', NEW.checked_in_at));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_ticket AFTER INSERT OR UPDATE OF checked_in_at ON tickets
    FOR EACH ROW EXECUTE FUNCTION webhook_ticket();

-- poll.voted (one per option chosen)
CREATE FUNCTION webhook_poll_vote() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF webhook_wanted(NEW.organization_id, 'poll.voted') THEN
        PERFORM webhook_emit(NEW.organization_id, 'poll.voted', jsonb_build_object(
            'poll_id', NEW.poll_id, 'option_id', NEW.option_id, 'contact', webhook_contact(NEW.contact_id)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_poll_vote AFTER INSERT ON poll_votes
    FOR EACH ROW EXECUTE FUNCTION webhook_poll_vote();

-- contact.opted_out, contact.opted_in (STOP, START, the API)
CREATE FUNCTION webhook_contact_opt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(OLD.opted_in, true) AND NEW.opted_in IS FALSE
       AND webhook_wanted(NEW.organization_id, 'contact.opted_out') THEN
        PERFORM webhook_emit(NEW.organization_id, 'contact.opted_out', jsonb_build_object(
            'contact', jsonb_build_object('id', NEW.id, 'phone', NEW.phone, 'name', NEW.name),
            'opted_out_at', NEW.opted_out_at));
    ELSIF OLD.opted_in IS FALSE AND NEW.opted_in IS TRUE
          AND webhook_wanted(NEW.organization_id, 'contact.opted_in') THEN
        PERFORM webhook_emit(NEW.organization_id, 'contact.opted_in', jsonb_build_object(
            'contact', jsonb_build_object('id', NEW.id, 'phone', NEW.phone, 'name', NEW.name),
            'opted_in_at', NEW.opted_in_at));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_contact_opt AFTER UPDATE OF opted_in ON contacts
    FOR EACH ROW EXECUTE FUNCTION webhook_contact_opt();

-- payment.confirmed (an M-Pesa payment the provider confirmed)
CREATE FUNCTION webhook_payment() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'paid' AND OLD.status IS DISTINCT FROM 'paid'
       AND webhook_wanted(NEW.organization_id, 'payment.confirmed') THEN
        PERFORM webhook_emit(NEW.organization_id, 'payment.confirmed', jsonb_build_object(
            'payment_id', NEW.id, 'amount', NEW.amount, 'receipt', NEW.receipt,
            'account_reference', NEW.account_reference, 'hold_id', NEW.hold_id,
            'contact', webhook_contact(NEW.contact_id)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_payment AFTER UPDATE OF status ON payment_requests
    FOR EACH ROW EXECUTE FUNCTION webhook_payment();

-- broadcast.finished
CREATE FUNCTION webhook_broadcast() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.completed_at IS NOT NULL AND OLD.completed_at IS NULL
       AND webhook_wanted(NEW.organization_id, 'broadcast.finished') THEN
        PERFORM webhook_emit(NEW.organization_id, 'broadcast.finished', jsonb_build_object(
            'broadcast_id', NEW.id, 'name', NEW.name, 'status', NEW.status,
            'recipients', NEW.recipient_count, 'sent', NEW.sent_count, 'delivered', NEW.delivered_count,
            'read', NEW.read_count, 'failed', NEW.failed_count, 'completed_at', NEW.completed_at));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_broadcast AFTER UPDATE OF completed_at ON broadcasts
    FOR EACH ROW EXECUTE FUNCTION webhook_broadcast();
