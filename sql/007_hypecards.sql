-- Phase 5, module IV: HypeCards (shareable images made from a template).

CREATE TABLE hypecard_templates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255) NOT NULL,
    width INTEGER NOT NULL DEFAULT 1080,
    height INTEGER NOT NULL DEFAULT 1080,
    background_type VARCHAR(20),
    background_value TEXT,
    layers JSONB NOT NULL DEFAULT '[]',
    variables JSONB DEFAULT '[]',
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_hypecard_templates_org ON hypecard_templates(organization_id);
SELECT tenant_table('hypecard_templates');

CREATE TABLE template_layers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    template_id UUID NOT NULL REFERENCES hypecard_templates(id) ON DELETE CASCADE,
    kind VARCHAR(20) NOT NULL CHECK (kind IN ('text', 'image', 'shape', 'qr')),
    z_index INTEGER NOT NULL DEFAULT 0,
    x INTEGER NOT NULL DEFAULT 0,
    y INTEGER NOT NULL DEFAULT 0,
    width INTEGER,
    height INTEGER,
    config JSONB NOT NULL DEFAULT '{}',       -- font, colour, the variable it shows ...
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_template_layers_template ON template_layers(template_id, z_index);
SELECT tenant_table('template_layers');

CREATE TABLE generated_cards (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    template_id UUID NOT NULL REFERENCES hypecard_templates(id),
    contact_id UUID REFERENCES contacts(id),
    input_data JSONB NOT NULL,
    image_url TEXT NOT NULL,
    thumbnail_url TEXT,
    view_count INTEGER DEFAULT 0,
    share_count INTEGER DEFAULT 0,
    tokens_consumed INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_generated_cards_template ON generated_cards(template_id);
CREATE INDEX idx_generated_cards_contact ON generated_cards(contact_id);
SELECT tenant_table('generated_cards');
