-- Issue 20: an organisation whose wallet cannot pay its replies is paused, visibly, and nothing moves on that
-- the contact did not see. A message whose replies cannot be paid is answered with one polite notice per
-- contact and pause, and its effects are undone (engine/turn.py); replies of the engine's own events
-- (payments, timers) wait in held_replies and go out when a top-up pays them (engine/wallet_pause.py).

CREATE TABLE wallet_pauses (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ended_at TIMESTAMPTZ,
    replies_not_sent INTEGER NOT NULL DEFAULT 0 CHECK (replies_not_sent >= 0),
    messages_unanswered INTEGER NOT NULL DEFAULT 0 CHECK (messages_unanswered >= 0),
    admins_notified INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
-- At most one open pause per organisation: concurrent turns of the last tokens meet on this key.
CREATE UNIQUE INDEX uq_wallet_pauses_open ON wallet_pauses(organization_id) WHERE ended_at IS NULL;
SELECT tenant_table('wallet_pauses');

-- Who was told "we cannot answer right now" during a pause: once per contact and pause.
CREATE TABLE wallet_pause_notices (
    pause_id UUID NOT NULL REFERENCES wallet_pauses(id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (pause_id, contact_id)
);
SELECT tenant_table('wallet_pause_notices');

-- Replies of payments and timers the wallet could not pay: the send job as the turn built it, and its price.
CREATE TABLE held_replies (
    id BIGSERIAL PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    content TEXT,
    job JSONB NOT NULL,
    price INTEGER NOT NULL DEFAULT 1 CHECK (price >= 0),
    released_at TIMESTAMPTZ,
    outcome VARCHAR(20) CHECK (outcome IN ('sent', 'outside_window')),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_held_replies_waiting ON held_replies(organization_id, id) WHERE released_at IS NULL;
SELECT tenant_table('held_replies');
