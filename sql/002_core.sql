-- Phase 1 core: organisations, people, roles, API keys, wallets.

CREATE TABLE organizations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    slug VARCHAR(100) UNIQUE NOT NULL,
    type VARCHAR(50), -- 'event_organizer', 'exhibitor', 'radio', 'church', etc.
    email VARCHAR(255),
    phone VARCHAR(20),
    website VARCHAR(255),
    whatsapp_phone_id VARCHAR(50),
    whatsapp_business_id VARCHAR(50),
    whatsapp_access_token TEXT,
    settings JSONB DEFAULT '{}',
    branding JSONB DEFAULT '{}',
    status VARCHAR(20) DEFAULT 'active', -- 'active', 'suspended', 'trial'
    trial_ends_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
-- slug is UNIQUE (already indexed); the design's extra idx_organizations_slug would duplicate it.
CREATE INDEX idx_organizations_status ON organizations(status);
-- One organisation per WhatsApp number: the number routes every inbound message.
CREATE UNIQUE INDEX uq_organizations_whatsapp_phone ON organizations(whatsapp_phone_id)
    WHERE whatsapp_phone_id IS NOT NULL;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON organizations USING (id = current_org()) WITH CHECK (id = current_org());
SELECT updated_at_trigger('organizations');

-- The one cross-tenant read the inbound path needs: which organisation owns this WhatsApp number.
-- SECURITY DEFINER so that the application role, which RLS confines, can route before it knows the tenant.
CREATE FUNCTION org_by_phone_number_id(p_phone_number_id TEXT) RETURNS UUID
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT id FROM organizations WHERE whatsapp_phone_id = p_phone_number_id AND status <> 'suspended'
$$;

CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID REFERENCES organizations(id) ON DELETE CASCADE,
    email VARCHAR(255) NOT NULL,
    phone VARCHAR(20),
    password_hash VARCHAR(255),
    first_name VARCHAR(100),
    last_name VARCHAR(100),
    avatar_url TEXT,
    email_verified_at TIMESTAMPTZ,
    last_login_at TIMESTAMPTZ,
    status VARCHAR(20) DEFAULT 'active',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(organization_id, email)
);
-- UNIQUE(organization_id, email) already serves lookups by organisation; idx_users_org is not repeated.
CREATE INDEX idx_users_email ON users(email);
SELECT tenant_table('users');

CREATE TABLE roles (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name VARCHAR(50) NOT NULL,
    permissions JSONB DEFAULT '[]',
    is_system BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(organization_id, name)
);
SELECT tenant_table('roles');

CREATE TABLE user_roles (
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    role_id UUID REFERENCES roles(id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX idx_user_roles_role ON user_roles(role_id);
SELECT tenant_table('user_roles');

CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    key_prefix VARCHAR(12) NOT NULL,          -- shown to people: "cn_live_ab12"
    key_hash VARCHAR(128) NOT NULL UNIQUE,    -- sha256 of the full key; the key itself is never stored
    scopes JSONB DEFAULT '[]',
    last_used_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_by UUID REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_api_keys_org ON api_keys(organization_id);
SELECT tenant_table('api_keys');

CREATE TABLE wallets (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID UNIQUE NOT NULL REFERENCES organizations(id),
    balance INTEGER NOT NULL DEFAULT 0,
    reserved_balance INTEGER NOT NULL DEFAULT 0,
    lifetime_purchased BIGINT DEFAULT 0,
    lifetime_consumed BIGINT DEFAULT 0,
    low_balance_threshold INTEGER DEFAULT 100,
    auto_refill_enabled BOOLEAN DEFAULT FALSE,
    auto_refill_amount INTEGER,
    currency VARCHAR(3) DEFAULT 'KES',
    low_balance_signalled_at TIMESTAMPTZ, -- set once when the balance cannot pay; cleared by a top-up
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    CONSTRAINT positive_balance CHECK (balance >= 0),
    CONSTRAINT positive_reserved CHECK (reserved_balance >= 0)
);
SELECT tenant_table('wallets');

CREATE TABLE token_transactions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    wallet_id UUID NOT NULL REFERENCES wallets(id),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    type VARCHAR(20) NOT NULL CHECK (type IN ('purchase', 'debit', 'refund', 'reserve', 'release', 'adjustment')),
    amount INTEGER NOT NULL,
    balance_before INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    module VARCHAR(50),
    action VARCHAR(100),
    reference_id UUID,
    metadata JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    created_by UUID REFERENCES users(id)
);
CREATE INDEX idx_token_tx_wallet ON token_transactions(wallet_id);
CREATE INDEX idx_token_tx_created ON token_transactions(created_at);
SELECT tenant_table('token_transactions');

CREATE TABLE token_purchases (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    wallet_id UUID NOT NULL REFERENCES wallets(id),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    tokens INTEGER NOT NULL CHECK (tokens > 0),
    bonus_tokens INTEGER DEFAULT 0,
    amount DECIMAL(10,2) NOT NULL,
    currency VARCHAR(3) NOT NULL,
    payment_method VARCHAR(20),
    payment_reference VARCHAR(100),
    payment_status VARCHAR(20) DEFAULT 'pending',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    completed_at TIMESTAMPTZ
);
CREATE INDEX idx_token_purchases_wallet ON token_purchases(wallet_id);
SELECT tenant_table('token_purchases');
