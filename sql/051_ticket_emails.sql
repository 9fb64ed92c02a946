-- Issue 20: the tickets a buyer asked to get by e-mail. Written in the transaction that issues the tickets
-- (so an e-mail exists exactly when its tickets do); sent after commit by the relay role's mailer
-- (engine/mailer.py), which claims rows with SKIP LOCKED and marks them sent once the SMTP server took them.
CREATE TABLE ticket_emails (
    id BIGSERIAL PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    hold_id UUID NOT NULL REFERENCES ticket_holds(id),
    to_address VARCHAR(254) NOT NULL,
    language VARCHAR(5) NOT NULL DEFAULT 'en',
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_error TEXT,
    sent_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (hold_id)
);
CREATE INDEX idx_ticket_emails_due ON ticket_emails(next_attempt_at) WHERE status = 'pending';
SELECT tenant_table('ticket_emails');
