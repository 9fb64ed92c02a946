-- Phase 4, module III: programmes, broadcasts and polls.

CREATE TABLE programs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255) NOT NULL,
    description TEXT,
    schedule_type VARCHAR(20),
    schedule_config JSONB,
    timezone VARCHAR(50) DEFAULT 'Africa/Nairobi',
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_programs_org ON programs(organization_id);
SELECT tenant_table('programs');

-- A recurring part of a programme (a radio show's "morning devotion", a church service's sermon slot).
CREATE TABLE segments (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    program_id UUID NOT NULL REFERENCES programs(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    starts_at_local TIME,
    duration_minutes INTEGER CHECK (duration_minutes IS NULL OR duration_minutes > 0),
    sort_order INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_segments_program ON segments(program_id);
SELECT tenant_table('segments');

CREATE TABLE content_items (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    program_id UUID REFERENCES programs(id) ON DELETE SET NULL,
    segment_id UUID REFERENCES segments(id) ON DELETE SET NULL,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    type VARCHAR(20) NOT NULL,
    title VARCHAR(255),
    body TEXT,
    media_url TEXT,
    scheduled_at TIMESTAMPTZ,
    published_at TIMESTAMPTZ,
    status VARCHAR(20) DEFAULT 'draft',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_content_items_org ON content_items(organization_id, scheduled_at);
SELECT tenant_table('content_items');

CREATE TABLE broadcasts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255),
    message_type VARCHAR(20) NOT NULL,
    message_content TEXT,
    media_url TEXT,
    template_name VARCHAR(255),               -- broadcasts go outside the 24-hour window: templates
    template_language VARCHAR(10),
    audience_filter JSONB,
    recipient_count INTEGER DEFAULT 0,
    scheduled_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    sent_count INTEGER DEFAULT 0,
    delivered_count INTEGER DEFAULT 0,
    read_count INTEGER DEFAULT 0,
    failed_count INTEGER DEFAULT 0,
    status VARCHAR(20) DEFAULT 'draft',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_broadcasts_org ON broadcasts(organization_id);
SELECT tenant_table('broadcasts');
ALTER TABLE messages ADD CONSTRAINT fk_messages_broadcast FOREIGN KEY (broadcast_id) REFERENCES broadcasts(id);

CREATE TABLE broadcast_recipients (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    broadcast_id UUID NOT NULL REFERENCES broadcasts(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    message_id UUID REFERENCES messages(id),
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'skipped')),
    error_code INTEGER,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(broadcast_id, contact_id)
);
SELECT tenant_table('broadcast_recipients');

CREATE TABLE polls (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    question TEXT NOT NULL,
    options JSONB NOT NULL, -- [{id, text, votes}]: kept equal to poll_options in the vote's transaction
    allow_multiple BOOLEAN DEFAULT FALSE,
    show_results BOOLEAN DEFAULT TRUE,
    ends_at TIMESTAMPTZ,
    status VARCHAR(20) DEFAULT 'active' CHECK (status IN ('draft', 'active', 'closed')),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_polls_org ON polls(organization_id);
SELECT tenant_table('polls');

CREATE TABLE poll_options (
    poll_id UUID NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    id VARCHAR(50) NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    text VARCHAR(255) NOT NULL,
    votes INTEGER NOT NULL DEFAULT 0 CHECK (votes >= 0),
    sort_order INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (poll_id, id)
);
SELECT tenant_table('poll_options');

CREATE TABLE poll_votes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    poll_id UUID NOT NULL REFERENCES polls(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    option_id VARCHAR(50) NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    -- The design's UNIQUE(poll_id, contact_id) would forbid allow_multiple polls; one row per chosen option.
    UNIQUE(poll_id, contact_id, option_id),
    FOREIGN KEY (poll_id, option_id) REFERENCES poll_options(poll_id, id)
);
CREATE INDEX idx_poll_votes_contact ON poll_votes(poll_id, contact_id);
SELECT tenant_table('poll_votes');
