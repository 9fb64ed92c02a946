-- Issue 15: what may be sent outside the 24-hour window. An organisation's message templates as its WhatsApp
-- Business Account holds them (organizations.whatsapp_business_id), synced from the Cloud API
-- (`chatnation templates sync`) and kept current by the template status and quality webhooks
-- (engine/templates.py). Only APPROVED templates are sent; PAUSED and DISABLED ones hold their sends.

CREATE TABLE message_templates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    whatsapp_business_id VARCHAR(50) NOT NULL,
    wa_template_id VARCHAR(100),              -- Meta's id of the template (the webhooks name it)
    name VARCHAR(512) NOT NULL,
    language VARCHAR(20) NOT NULL,            -- Meta's code: en, en_US, sw ...
    category VARCHAR(30),                     -- MARKETING, UTILITY, AUTHENTICATION
    status VARCHAR(30) NOT NULL,              -- APPROVED, PENDING, REJECTED, PAUSED, DISABLED, IN_APPEAL ...
    status_reason TEXT,                       -- why it was rejected, paused or disabled, as Meta said
    quality VARCHAR(20),                      -- GREEN, YELLOW, RED, UNKNOWN
    parameter_format VARCHAR(20),             -- POSITIONAL ({{1}}) or NAMED ({{first_name}})
    components JSONB NOT NULL DEFAULT '[]',   -- as Meta returns them: HEADER, BODY, FOOTER, BUTTONS
    synced_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (organization_id, name, language)
);
CREATE INDEX idx_message_templates_wa_id ON message_templates(organization_id, wa_template_id);
SELECT tenant_table('message_templates');

-- The template webhooks carry the business account's id (entry.id) and no phone number: which organisations
-- use that account. SECURITY DEFINER like org_by_phone_number_id, for the same reason (routing before the
-- tenant is known); it returns ids only.
CREATE FUNCTION orgs_by_business_account_id(p_waba_id TEXT) RETURNS uuid[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT COALESCE(array_agg(id ORDER BY id), '{}') FROM organizations
    WHERE whatsapp_business_id = p_waba_id AND status <> 'suspended'
$$;
CREATE INDEX idx_organizations_waba ON organizations(whatsapp_business_id) WHERE whatsapp_business_id IS NOT NULL;

-- Two lanes out: replies to people who are chatting, and bulk (broadcasts, programmes, reminders). The relay
-- publishes replies first and the sender serves them first (engine/outbox.py, engine/sender.py).
ALTER TABLE outbox ADD COLUMN lane VARCHAR(10) NOT NULL DEFAULT 'reply' CHECK (lane IN ('reply', 'bulk'));
CREATE INDEX idx_outbox_pending_lane ON outbox(lane, id) WHERE relayed_at IS NULL;
