-- HypeCards in the conversation (issue 19, docs/hypecards.md): templates as the content YAML defines them
-- (canvas here, ordered layers in template_layers), their pictures, the render cache, the cards people asked
-- for (status, referral code, the image), and who came to the chat through a card.

-- The canvas's background is background_type + background_value (its JSON spec); the layers live in
-- template_layers (hypecard_templates.layers stays '[]': one copy of each layer).
ALTER TABLE hypecard_templates
    ADD COLUMN title JSONB,                                   -- {en, sw}: the menu row and the offer
    ADD COLUMN event_id UUID REFERENCES events(id),           -- offered after a ticket purchase for it
    ADD COLUMN poll_id UUID REFERENCES polls(id),             -- offered after a vote in it
    ADD COLUMN in_menu BOOLEAN NOT NULL DEFAULT false,        -- listed in the menu (a campaign)
    ADD COLUMN output_format VARCHAR(10) NOT NULL DEFAULT 'jpeg' CHECK (output_format IN ('jpeg', 'png')),
    ADD COLUMN texts JSONB NOT NULL DEFAULT '{}';             -- {caption: {en, sw}, share: {en, sw}}
CREATE UNIQUE INDEX uq_hypecard_templates_name ON hypecard_templates(organization_id, name);
CREATE INDEX idx_hypecard_templates_event ON hypecard_templates(event_id) WHERE event_id IS NOT NULL;
CREATE INDEX idx_hypecard_templates_poll ON hypecard_templates(poll_id) WHERE poll_id IS NOT NULL;

-- Pictures a template draws (background, uploaded pictures) and the organisation's logo, by content.
CREATE TABLE hypecard_assets (
    organization_id UUID NOT NULL REFERENCES organizations(id),
    sha256 CHAR(64) NOT NULL,
    name VARCHAR(255),                                        -- 'logo', or the file it was imported from
    mime_type VARCHAR(50) NOT NULL,
    width INTEGER,
    height INTEGER,
    data BYTEA NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (organization_id, sha256)
);
SELECT tenant_table('hypecard_assets');
CREATE UNIQUE INDEX uq_hypecard_assets_logo ON hypecard_assets(organization_id) WHERE name = 'logo';

-- The render cache: a card is a pure function of its inputs, so their hash names its bytes. media_id is
-- what the bytes were last uploaded to WhatsApp as (reused while WhatsApp keeps media: 30 days).
CREATE TABLE hypecard_images (
    organization_id UUID NOT NULL REFERENCES organizations(id),
    input_hash CHAR(64) NOT NULL,
    mime_type VARCHAR(20) NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    data BYTEA NOT NULL,
    render_ms REAL,
    hits INTEGER NOT NULL DEFAULT 0,                          -- cards served from this entry after the first
    media_id VARCHAR(100),
    media_phone_number_id VARCHAR(50),
    media_uploaded_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (organization_id, input_hash)
);
SELECT tenant_table('hypecard_images');

-- A card someone asked for: pending (queued to the cards role) -> rendered -> sent, or failed. image_url is
-- 'card:<id>', which the sender resolves through input_hash to hypecard_images. code is the referral code
-- in the card's QR code / link: the same for every card of one contact and template.
ALTER TABLE generated_cards
    ADD COLUMN conversation_id UUID REFERENCES conversations(id),
    ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'rendered', 'sent', 'failed')),
    ADD COLUMN code VARCHAR(16),
    ADD COLUMN language VARCHAR(5),
    ADD COLUMN input_hash CHAR(64),
    ADD COLUMN cache_hit BOOLEAN,
    ADD COLUMN error TEXT,
    ADD COLUMN rendered_at TIMESTAMPTZ,
    ADD COLUMN sent_at TIMESTAMPTZ;
CREATE INDEX idx_generated_cards_code ON generated_cards(organization_id, code);

-- Who came to the chat through a card's code: view_count counts every arrival, share_count each person
-- (other than the card's owner) the first time.
CREATE TABLE hypecard_referrals (
    organization_id UUID NOT NULL REFERENCES organizations(id),
    code VARCHAR(16) NOT NULL,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    card_id UUID NOT NULL REFERENCES generated_cards(id),
    visits INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (organization_id, code, contact_id)
);
SELECT tenant_table('hypecard_referrals');

-- tokens_consumed is what the ledger took for the card: written by the ledger row itself, so the two never
-- disagree (an empty wallet makes no row, and the card says 0).
CREATE FUNCTION hypecard_tokens_from_ledger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE generated_cards SET tokens_consumed = tokens_consumed - NEW.amount
    WHERE id = NEW.reference_id AND organization_id = NEW.organization_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_hypecard_tokens AFTER INSERT ON token_transactions
    FOR EACH ROW WHEN (NEW.module = 'hypecard' AND NEW.type = 'debit' AND NEW.reference_id IS NOT NULL)
    EXECUTE FUNCTION hypecard_tokens_from_ledger();
