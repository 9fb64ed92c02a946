-- Issue 18, part 1: the agenda. Sessions and speakers get the keys the content file finds them by on
-- re-import (engine/event_content.py), a session can be cancelled without losing who asked to be reminded,
-- and "Remind me" is a row per (session, contact) beside the conversation timer that fires it.
ALTER TABLE sessions ADD COLUMN key VARCHAR(100);
ALTER TABLE sessions ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'scheduled'
    CHECK (status IN ('scheduled', 'cancelled'));
UPDATE sessions SET key = id::text WHERE key IS NULL;
ALTER TABLE sessions ALTER COLUMN key SET NOT NULL;
CREATE UNIQUE INDEX uq_sessions_key ON sessions(event_id, key);

-- A speaker row per (session, speaker); ``key`` names the person across the event's sessions.
ALTER TABLE speakers ADD COLUMN key VARCHAR(100);
CREATE INDEX idx_speakers_key ON speakers(organization_id, key);

-- How many minutes before a session its reminders fire (default 10: state_machines/agenda.py).
ALTER TABLE events ADD COLUMN reminder_minutes INTEGER CHECK (reminder_minutes IS NULL OR reminder_minutes BETWEEN 1 AND 1440);

CREATE TABLE session_reminders (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    session_id UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    minutes_before INTEGER NOT NULL CHECK (minutes_before > 0),
    -- pending: its timer waits; sent: it fired; cancelled: the contact or the session cancelled it
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'cancelled')),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (session_id, contact_id)
);
CREATE INDEX idx_session_reminders_session ON session_reminders(session_id) WHERE status <> 'cancelled';
SELECT tenant_table('session_reminders');

-- The content file's venue and exhibitor details (issue 18): a booth's hall is booth_locations.zone, how to find
-- it is its position; an exhibitor's category (to find it by) and its brochure (sent as a document).
ALTER TABLE booth_locations ADD COLUMN position TEXT;
ALTER TABLE exhibitors ADD COLUMN category VARCHAR(100);
ALTER TABLE exhibitors ADD COLUMN brochure_url TEXT;
CREATE UNIQUE INDEX uq_exhibitors_booth ON exhibitors(event_id, upper(booth_number));
CREATE UNIQUE INDEX uq_exhibitor_products_name ON exhibitor_products(exhibitor_id, name);
