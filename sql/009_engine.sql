-- The pipeline's own tables: exactly-once receipts, the transactional outbox, M-Pesa payment requests.

-- Every external event that takes effect is recorded here in the same transaction as its effect; a
-- redelivery finds its row and does nothing. source: 'wa_message', 'mpesa_callback', 'timer', ...
CREATE TABLE processed_events (
    organization_id UUID NOT NULL REFERENCES organizations(id),
    source VARCHAR(30) NOT NULL,
    external_id VARCHAR(200) NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (organization_id, source, external_id)
);
CREATE INDEX idx_processed_events_at ON processed_events(processed_at);
SELECT tenant_table('processed_events');

-- A reply exists here if and only if its transaction committed; the relay publishes rows in id order.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    message_id UUID NOT NULL REFERENCES messages(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    payload JSONB NOT NULL,                   -- the send job: phone_number_id, to, request body
    relayed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_outbox_pending ON outbox(id) WHERE relayed_at IS NULL;
SELECT tenant_table('outbox');

CREATE TABLE payment_requests (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    hold_id UUID REFERENCES ticket_holds(id),
    provider VARCHAR(20) NOT NULL DEFAULT 'mpesa',
    phone VARCHAR(20) NOT NULL,
    amount DECIMAL(10,2) NOT NULL CHECK (amount > 0),
    account_reference VARCHAR(50) NOT NULL,
    description VARCHAR(100),
    merchant_request_id VARCHAR(100),
    checkout_request_id VARCHAR(100) UNIQUE,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'requested', 'paid', 'failed', 'expired', 'error')),
    result_code INTEGER,
    result_desc TEXT,
    receipt VARCHAR(50),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_payment_requests_pending ON payment_requests(created_at) WHERE status IN ('pending', 'requested');
SELECT tenant_table('payment_requests');

-- Routes a Daraja callback (which names only its CheckoutRequestID) to its tenant and contact, for the
-- application role that RLS confines.
CREATE FUNCTION payment_route(p_checkout_request_id TEXT)
RETURNS TABLE (organization_id UUID, contact_id UUID, payment_request_id UUID)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT organization_id, contact_id, id FROM payment_requests WHERE checkout_request_id = p_checkout_request_id
$$;
