-- Programmes (issue 15): a schedule at a local time in the programme's time zone; at each occurrence the next
-- content item becomes a broadcast to the programme's subscribers (engine/programmes.py computes occurrences
-- with zoneinfo, daylight-saving-safe, and the scheduler fires each once: broadcasts.source_key is unique).
--
-- schedule_type: daily | weekly | dates; schedule_config: {"time": "06:00", "days": ["mon", ...],
-- "dates": ["2026-12-24", ...]}.

ALTER TABLE programs
    ADD COLUMN key VARCHAR(100),                      -- the content file's name for it
    ADD COLUMN subscribe_keywords TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN unsubscribe_keywords TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN menu_title VARCHAR(24),                 -- "Daily devotional" in the menu (subscribe / leave)
    ADD COLUMN next_fire_at TIMESTAMPTZ,               -- the next occurrence, NULL when none is left
    ADD COLUMN last_fired_at TIMESTAMPTZ,
    ADD CONSTRAINT programs_schedule_type CHECK (schedule_type IS NULL OR schedule_type IN ('daily', 'weekly', 'dates'));
CREATE UNIQUE INDEX uq_programs_key ON programs(organization_id, key) WHERE key IS NOT NULL;
CREATE INDEX idx_programs_due ON programs(next_fire_at) WHERE is_active AND next_fire_at IS NOT NULL;

ALTER TABLE content_items
    ADD COLUMN sort_order INTEGER NOT NULL DEFAULT 0,  -- items go out in this order, one per occurrence
    ADD COLUMN template_name VARCHAR(255),             -- for subscribers outside their 24-hour window
    ADD COLUMN template_language VARCHAR(10),
    ADD COLUMN template_params JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN broadcast_id UUID REFERENCES broadcasts(id);
CREATE INDEX idx_content_items_next ON content_items(program_id, sort_order) WHERE status = 'scheduled';

CREATE TABLE program_subscriptions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    program_id UUID NOT NULL REFERENCES programs(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    status VARCHAR(20) NOT NULL DEFAULT 'subscribed' CHECK (status IN ('subscribed', 'unsubscribed')),
    source VARCHAR(20) NOT NULL DEFAULT 'keyword' CHECK (source IN ('keyword', 'menu', 'operator')),
    subscribed_at TIMESTAMPTZ DEFAULT NOW(),
    unsubscribed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(program_id, contact_id)
);
CREATE INDEX idx_program_subscriptions_contact ON program_subscriptions(contact_id);
SELECT tenant_table('program_subscriptions');
