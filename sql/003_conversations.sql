-- Phase 1 core: contacts, conversations, messages and the conversation engine's state and timers.

CREATE TABLE contacts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    phone VARCHAR(20) NOT NULL,
    whatsapp_id VARCHAR(50),
    name VARCHAR(255),
    email VARCHAR(255),
    language VARCHAR(5),                      -- chosen by the contact ("en", "sw"); NULL: organisation default
    profile JSONB DEFAULT '{}',
    tags TEXT[] DEFAULT '{}',
    first_seen_at TIMESTAMPTZ,
    last_seen_at TIMESTAMPTZ,
    message_count INTEGER DEFAULT 0,
    opted_in BOOLEAN DEFAULT TRUE,
    opted_in_at TIMESTAMPTZ,
    opted_out_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(organization_id, phone)
);
-- UNIQUE(organization_id, phone) leads with organization_id, so idx_contacts_org is not repeated.
CREATE INDEX idx_contacts_phone ON contacts(phone);
CREATE INDEX idx_contacts_whatsapp ON contacts(whatsapp_id);
CREATE INDEX idx_contacts_tags ON contacts USING gin(tags);
SELECT tenant_table('contacts');

CREATE TABLE conversations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    status VARCHAR(20) DEFAULT 'active' CHECK (status IN ('active', 'closed', 'archived')),
    current_state VARCHAR(50),
    state_data JSONB DEFAULT '{}',
    state_version INTEGER NOT NULL DEFAULT 0, -- bumped by every state change; timers set at an older version are stale
    current_module VARCHAR(50),
    current_reference_id UUID,
    last_message_at TIMESTAMPTZ,
    last_user_message_at TIMESTAMPTZ,         -- opens the 24-hour customer-service window
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_conversations_org ON conversations(organization_id);
CREATE INDEX idx_conversations_contact ON conversations(contact_id);
CREATE INDEX idx_conversations_status ON conversations(status);
-- At most one active conversation per contact: concurrent first messages cannot open two.
CREATE UNIQUE INDEX uq_conversations_active_contact ON conversations(contact_id) WHERE status = 'active';
SELECT tenant_table('conversations');

-- Per-module memory of a conversation that outlives the current flow (e.g. where a survey stopped).
CREATE TABLE conversation_states (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    module VARCHAR(50) NOT NULL,
    state VARCHAR(50) NOT NULL,
    data JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(conversation_id, module)
);
SELECT tenant_table('conversation_states');

CREATE TABLE messages (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    direction VARCHAR(10) NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    type VARCHAR(20) NOT NULL,
    content TEXT,
    media_url TEXT,
    payload JSONB,                            -- inbound: the raw Cloud API message; outbound: the send request
    wa_message_id VARCHAR(100),
    wa_status VARCHAR(20) CHECK (wa_status IN ('queued', 'sent', 'delivered', 'read', 'failed')),
    error_code INTEGER,
    error_title TEXT,
    broadcast_id UUID,
    sent_at TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    read_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    intent VARCHAR(100),
    entities JSONB,
    tokens_consumed INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_messages_conversation ON messages(conversation_id, created_at);
CREATE INDEX idx_messages_created ON messages(created_at);
CREATE INDEX idx_messages_contact ON messages(contact_id, created_at);
-- A WhatsApp message id names one message: the inbound dedupe's second guard and the status update's key.
CREATE UNIQUE INDEX uq_messages_wa_id ON messages(organization_id, wa_message_id) WHERE wa_message_id IS NOT NULL;
SELECT tenant_table('messages');

-- Timers (payment expiry, survey reminders, abandonment): fired by a periodic job through the contact's
-- ordered path, ignored when the conversation's state_version has moved on since they were set.
CREATE TABLE conversation_timers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    kind VARCHAR(50) NOT NULL,
    state_version INTEGER NOT NULL,
    data JSONB NOT NULL DEFAULT '{}',
    due_at TIMESTAMPTZ NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'fired', 'cancelled')),
    fired_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_timers_due ON conversation_timers(due_at) WHERE status = 'pending';
CREATE INDEX idx_timers_conversation ON conversation_timers(conversation_id) WHERE status = 'pending';
SELECT tenant_table('conversation_timers');
