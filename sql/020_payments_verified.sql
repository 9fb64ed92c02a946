-- Issue 14: payments you can trust. A Daraja callback is a hint: it is routed by the per-request secret in its
-- URL path, checked against the request it names, and confirmed with the STK Push Query before any decision.
-- What a person must act on (paid without tickets, refunds due, suspicious callbacks) is kept here for
-- `chatnation payments reconcile`.

ALTER TABLE payment_requests
    -- sha256 of the secret in this request's CallBackURL path; the secret itself is never stored
    ADD COLUMN callback_token_hash BYTEA UNIQUE,
    -- what the money buys: tickets (a conversation's hold) or tokens (an organisation's top-up)
    ADD COLUMN purpose VARCHAR(20) NOT NULL DEFAULT 'tickets' CHECK (purpose IN ('tickets', 'tokens')),
    ADD COLUMN token_purchase_id UUID REFERENCES token_purchases(id),
    ADD COLUMN confirmed_at TIMESTAMPTZ,             -- when the STK Push Query confirmed the outcome
    ADD COLUMN confirmed_by VARCHAR(20),             -- callback | timer | reconciler
    ADD COLUMN query_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_query_at TIMESTAMPTZ,
    ADD COLUMN last_query_state VARCHAR(20),         -- paid | failed | pending | unreachable
    ADD COLUMN next_query_at TIMESTAMPTZ,            -- the reconciler's next look (NULL: not before it is old)
    -- what became of a confirmed payment: tickets issued, a refund due (no seats left) and done, tokens credited
    ADD COLUMN settlement VARCHAR(20) CHECK (settlement IN ('issued', 'refund_due', 'refunded', 'credited')),
    ADD COLUMN settled_at TIMESTAMPTZ,
    ADD COLUMN refund_reference VARCHAR(100),
    ADD COLUMN refund_note TEXT,
    ADD COLUMN refunded_at TIMESTAMPTZ;
-- A top-up started from the command line has no contact and no conversation.
ALTER TABLE payment_requests ALTER COLUMN contact_id DROP NOT NULL;
ALTER TABLE payment_requests ALTER COLUMN conversation_id DROP NOT NULL;
CREATE INDEX idx_payment_requests_open ON payment_requests(next_query_at) WHERE status = 'requested';
CREATE INDEX idx_payment_requests_settlement ON payment_requests(settlement) WHERE settlement = 'refund_due';

-- A confirmed success is final: no later callback, query or applier turns it into anything else.
CREATE OR REPLACE FUNCTION payment_paid_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'paid' AND NEW.status IS DISTINCT FROM 'paid' THEN
        RAISE EXCEPTION 'payment request % is paid; its status cannot become %', OLD.id, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'paid' AND NEW.receipt IS DISTINCT FROM OLD.receipt AND OLD.receipt IS NOT NULL THEN
        NEW.receipt := OLD.receipt;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_requests_paid_is_final BEFORE UPDATE ON payment_requests
    FOR EACH ROW EXECUTE FUNCTION payment_paid_is_final();

-- Callbacks that named a real request but did not match it (amount, phone, MerchantRequestID), or that
-- M-Pesa's own answer contradicted. Refused, logged, kept for people to look at.
CREATE TABLE suspicious_callbacks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    payment_request_id UUID REFERENCES payment_requests(id),
    checkout_request_id VARCHAR(100),
    reason VARCHAR(200) NOT NULL,
    claimed_result_code INTEGER,
    source_ip VARCHAR(64),
    payload JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_suspicious_callbacks_request ON suspicious_callbacks(payment_request_id);
CREATE INDEX idx_suspicious_callbacks_at ON suspicious_callbacks(created_at);
SELECT tenant_table('suspicious_callbacks');

-- Automatic top-ups (engine/topups.py): at most one in flight per wallet; a failed one stops them until an
-- operator acts (`chatnation wallet buy` or `wallet auto-refill --resume`).
ALTER TABLE wallets
    ADD COLUMN auto_refill_pending UUID REFERENCES token_purchases(id),
    ADD COLUMN auto_refill_stopped_at TIMESTAMPTZ,
    ADD COLUMN auto_refill_stopped_reason TEXT;
