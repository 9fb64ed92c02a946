-- Phase 2, module I: events, tickets, exhibitors and everything the diagram hangs off them.

CREATE TABLE venues (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255) NOT NULL,
    address TEXT,
    city VARCHAR(100),
    capacity INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    latitude DECIMAL(9,6),
    longitude DECIMAL(9,6),
    floor_plan_url TEXT,
    settings JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_venues_org ON venues(organization_id);
SELECT tenant_table('venues');

CREATE TABLE events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    venue_id UUID REFERENCES venues(id) ON DELETE SET NULL,
    name VARCHAR(255) NOT NULL,
    slug VARCHAR(100),
    description TEXT,
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    timezone VARCHAR(50) DEFAULT 'Africa/Nairobi',
    venue_name VARCHAR(255),
    venue_address TEXT,
    is_virtual BOOLEAN DEFAULT FALSE,
    virtual_url TEXT,
    cover_image_url TEXT,
    settings JSONB DEFAULT '{}',
    status VARCHAR(20) DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'cancelled', 'completed')),
    published_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    CHECK (ends_at >= starts_at)
);
CREATE INDEX idx_events_org ON events(organization_id);
CREATE INDEX idx_events_dates ON events(starts_at, ends_at);
CREATE INDEX idx_events_status ON events(status);
SELECT tenant_table('events');

CREATE TABLE sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    event_id UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    title VARCHAR(255) NOT NULL,
    description TEXT,
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    room VARCHAR(100),
    track VARCHAR(100),
    capacity INTEGER,
    sort_order INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    CHECK (ends_at >= starts_at)
);
CREATE INDEX idx_sessions_event ON sessions(event_id, starts_at);
SELECT tenant_table('sessions');

CREATE TABLE speakers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    session_id UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    title VARCHAR(255),
    company VARCHAR(255),
    bio TEXT,
    photo_url TEXT,
    email VARCHAR(255),
    phone VARCHAR(20),
    sort_order INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_speakers_session ON speakers(session_id);
SELECT tenant_table('speakers');

CREATE TABLE ticket_types (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    event_id UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    description TEXT,
    price DECIMAL(10,2) NOT NULL DEFAULT 0 CHECK (price >= 0),
    currency VARCHAR(3) DEFAULT 'KES',
    quantity_total INTEGER CHECK (quantity_total IS NULL OR quantity_total >= 0),
    quantity_sold INTEGER NOT NULL DEFAULT 0 CHECK (quantity_sold >= 0),
    quantity_held INTEGER NOT NULL DEFAULT 0 CHECK (quantity_held >= 0), -- in unpaid holds
    max_per_order INTEGER DEFAULT 10 CHECK (max_per_order > 0),
    sales_start_at TIMESTAMPTZ,
    sales_end_at TIMESTAMPTZ,
    is_active BOOLEAN DEFAULT TRUE,
    sort_order INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    -- Never oversold: what is sold plus what is held fits in what exists.
    CONSTRAINT ticket_inventory CHECK (quantity_total IS NULL OR quantity_sold + quantity_held <= quantity_total)
);
CREATE INDEX idx_ticket_types_event ON ticket_types(event_id, sort_order);
SELECT tenant_table('ticket_types');

-- Seats set aside while the buyer pays; released when payment fails, is cancelled or times out.
CREATE TABLE ticket_holds (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    ticket_type_id UUID NOT NULL REFERENCES ticket_types(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    conversation_id UUID REFERENCES conversations(id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price DECIMAL(10,2) NOT NULL,
    total DECIMAL(10,2) NOT NULL,
    holder_name VARCHAR(255),
    holder_email VARCHAR(255),
    status VARCHAR(20) NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'issued', 'released', 'expired')),
    release_reason VARCHAR(50),
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_ticket_holds_expiry ON ticket_holds(expires_at) WHERE status = 'held';
SELECT tenant_table('ticket_holds');

CREATE TABLE tickets (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    ticket_type_id UUID NOT NULL REFERENCES ticket_types(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    hold_id UUID REFERENCES ticket_holds(id),
    ticket_code VARCHAR(20) UNIQUE NOT NULL,
    qr_code_url TEXT,
    holder_name VARCHAR(255),
    holder_email VARCHAR(255),
    holder_phone VARCHAR(20),
    amount_paid DECIMAL(10,2),
    payment_reference VARCHAR(100),
    payment_status VARCHAR(20) DEFAULT 'pending',
    status VARCHAR(20) DEFAULT 'valid' CHECK (status IN ('valid', 'used', 'cancelled', 'refunded')),
    checked_in_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
-- ticket_code is UNIQUE (already indexed); the design's idx_tickets_code would duplicate it.
CREATE INDEX idx_tickets_type ON tickets(ticket_type_id);
CREATE INDEX idx_tickets_contact ON tickets(contact_id);
SELECT tenant_table('tickets');

-- Generated QR images of ticket codes (bytes kept here so a resend needs no renderer).
CREATE TABLE ticket_images (
    ticket_id UUID PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    content_type VARCHAR(50) NOT NULL DEFAULT 'image/png',
    image BYTEA NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
SELECT tenant_table('ticket_images');

CREATE TABLE check_ins (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    ticket_id UUID NOT NULL REFERENCES tickets(id),
    event_id UUID NOT NULL REFERENCES events(id),
    checked_in_by_contact_id UUID REFERENCES contacts(id),
    gate VARCHAR(50),
    outcome VARCHAR(20) NOT NULL CHECK (outcome IN ('admitted', 'already_used', 'cancelled')),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_check_ins_ticket ON check_ins(ticket_id);
-- A ticket admits once: a second 'admitted' row for it is impossible even for two doors at once.
CREATE UNIQUE INDEX uq_check_ins_admitted ON check_ins(ticket_id) WHERE outcome = 'admitted';
SELECT tenant_table('check_ins');

CREATE TABLE exhibitors (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations(id), -- the event's organisation (tenant)
    account_organization_id UUID REFERENCES organizations(id),  -- the exhibitor's own account, if any
    name VARCHAR(255) NOT NULL,
    description TEXT,
    logo_url TEXT,
    booth_number VARCHAR(50),
    booth_location JSONB,
    contact_name VARCHAR(255),
    contact_email VARCHAR(255),
    contact_phone VARCHAR(20),
    settings JSONB DEFAULT '{}',
    status VARCHAR(20) DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_exhibitors_event ON exhibitors(event_id);
SELECT tenant_table('exhibitors');

CREATE TABLE exhibitor_products (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    exhibitor_id UUID NOT NULL REFERENCES exhibitors(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    price DECIMAL(10,2),
    currency VARCHAR(3) DEFAULT 'KES',
    image_url TEXT,
    sort_order INTEGER DEFAULT 0,
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_exhibitor_products_exhibitor ON exhibitor_products(exhibitor_id);
SELECT tenant_table('exhibitor_products');

CREATE TABLE exhibitor_staff (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    exhibitor_id UUID NOT NULL REFERENCES exhibitors(id) ON DELETE CASCADE,
    contact_id UUID REFERENCES contacts(id),
    name VARCHAR(255) NOT NULL,
    phone VARCHAR(20) NOT NULL,
    email VARCHAR(255),
    role VARCHAR(50) DEFAULT 'staff',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(exhibitor_id, phone)
);
SELECT tenant_table('exhibitor_staff');

CREATE TABLE leads (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    exhibitor_id UUID NOT NULL REFERENCES exhibitors(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    source VARCHAR(50),
    notes TEXT,
    interest_level INTEGER CHECK (interest_level IS NULL OR interest_level BETWEEN 1 AND 5),
    follow_up_status VARCHAR(20) DEFAULT 'new',
    followed_up_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_leads_exhibitor ON leads(exhibitor_id);
SELECT tenant_table('leads');

-- People taking part in an event in a role: attendee, speaker, volunteer, and 'staff' (may check tickets in).
CREATE TABLE participants (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    event_id UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    contact_id UUID REFERENCES contacts(id),
    name VARCHAR(255),
    phone VARCHAR(20) NOT NULL,
    email VARCHAR(255),
    role VARCHAR(20) NOT NULL DEFAULT 'attendee' CHECK (role IN ('attendee', 'speaker', 'volunteer', 'staff', 'vip')),
    registered_at TIMESTAMPTZ DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(event_id, phone, role)
);
CREATE INDEX idx_participants_phone ON participants(organization_id, phone);
SELECT tenant_table('participants');

CREATE TABLE booth_locations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    venue_id UUID NOT NULL REFERENCES venues(id) ON DELETE CASCADE,
    exhibitor_id UUID REFERENCES exhibitors(id) ON DELETE SET NULL,
    booth_number VARCHAR(50) NOT NULL,
    zone VARCHAR(100),
    x DECIMAL(8,2),
    y DECIMAL(8,2),
    width DECIMAL(8,2),
    height DECIMAL(8,2),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(venue_id, booth_number)
);
SELECT tenant_table('booth_locations');
