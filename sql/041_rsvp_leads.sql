-- Issue 18, part 2: RSVPs with a waiting list, booth leads with the visitor's consent.

-- An event or a session people register for without paying: ``rsvp_capacity`` places (NULL: no limit) when
-- ``rsvp`` is on; a session's places are ``sessions.capacity``.
ALTER TABLE events ADD COLUMN rsvp BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE events ADD COLUMN rsvp_capacity INTEGER CHECK (rsvp_capacity IS NULL OR rsvp_capacity >= 0);

-- Exhibitor staff take part in the event too.
ALTER TABLE participants DROP CONSTRAINT IF EXISTS participants_role_check;
ALTER TABLE participants ADD CONSTRAINT participants_role_check
    CHECK (role IN ('attendee', 'speaker', 'volunteer', 'staff', 'vip', 'exhibitor'));

-- One place (or a place in the queue) per contact for the event or for one of its sessions. Confirmed places
-- never exceed the capacity: they are counted under a lock on the event's or the session's row
-- (handlers/rsvp_effects.py); a cancellation promotes the oldest waiting one in the same transaction.
CREATE TABLE registrations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    event_id UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    session_id UUID REFERENCES sessions(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    participant_id UUID REFERENCES participants(id) ON DELETE SET NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'waiting', 'cancelled')),
    promoted_at TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE UNIQUE INDEX uq_registrations_live ON registrations(
    event_id, COALESCE(session_id, '00000000-0000-0000-0000-000000000000'::uuid), contact_id)
    WHERE status <> 'cancelled';
CREATE INDEX idx_registrations_queue ON registrations(event_id, session_id, created_at) WHERE status = 'waiting';
SELECT tenant_table('registrations');

-- A lead exists only with the visitor's consent to share their number, recorded with the words they agreed to
-- (nothing wrote leads before this migration, so the table is empty and the columns can be required).
ALTER TABLE leads ADD COLUMN product_id UUID REFERENCES exhibitor_products(id) ON DELETE SET NULL;
ALTER TABLE leads ADD COLUMN consent_at TIMESTAMPTZ NOT NULL;
ALTER TABLE leads ADD COLUMN consent_text TEXT NOT NULL;
ALTER TABLE leads ADD COLUMN followed_up_by UUID REFERENCES exhibitor_staff(id) ON DELETE SET NULL;
ALTER TABLE leads ADD CONSTRAINT leads_follow_up CHECK (follow_up_status IN ('new', 'followed_up'));
