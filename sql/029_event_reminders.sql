-- Event reminders (issue 15): messages to an event's ticket holders at a time relative to its start ("1 day
-- before", "2 hours before", "at doors open" = some minutes before). fire_at moves with the event (the trigger
-- below); a cancelled event's pending reminders are cancelled and one "event cancelled" message replaces them
-- (event_cancellations, sent by the scheduler). The scheduler fires each due reminder once: broadcasts.source_key
-- names the reminder and the time it was due for.

CREATE TABLE event_reminders (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    event_id UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,                  -- "1 day before": how the content file names it
    offset_minutes INTEGER NOT NULL,             -- relative to the event's start; negative: before it
    text TEXT,
    template_name VARCHAR(255),
    template_language VARCHAR(10),
    template_params JSONB NOT NULL DEFAULT '[]',
    fire_at TIMESTAMPTZ NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'fired', 'cancelled', 'missed')),
    fired_at TIMESTAMPTZ,
    broadcast_id UUID REFERENCES broadcasts(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(event_id, name)                       -- a text or a template: checked by the content import
);
CREATE INDEX idx_event_reminders_due ON event_reminders(fire_at) WHERE status = 'pending';
SELECT tenant_table('event_reminders');

-- One "event cancelled" message per cancelled event that had reminders.
CREATE TABLE event_cancellations (
    event_id UUID PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    text TEXT,                                   -- NULL: the engine's own words, in the organisation's language
    broadcast_id UUID REFERENCES broadcasts(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_event_cancellations_unsent ON event_cancellations(created_at) WHERE broadcast_id IS NULL;
SELECT tenant_table('event_cancellations');

-- The event moved: its reminders move with it. One already sent whose new time is still ahead goes again at
-- the new time (the holders were told of the old date).
CREATE FUNCTION event_reminders_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.starts_at IS DISTINCT FROM OLD.starts_at THEN
        UPDATE event_reminders
        SET fire_at = NEW.starts_at + make_interval(mins => offset_minutes),
            status = CASE WHEN status IN ('fired', 'missed') AND NEW.starts_at + make_interval(mins => offset_minutes) > now()
                          THEN 'pending' ELSE status END
        WHERE event_id = NEW.id AND status IN ('pending', 'fired', 'missed');
    END IF;
    IF NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled' THEN
        INSERT INTO event_cancellations (event_id, organization_id, text)
        SELECT NEW.id, NEW.organization_id, NULL
        WHERE EXISTS (SELECT FROM event_reminders WHERE event_id = NEW.id)
        ON CONFLICT (event_id) DO NOTHING;
        UPDATE event_reminders SET status = 'cancelled' WHERE event_id = NEW.id AND status = 'pending';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_event_reminders_follow AFTER UPDATE OF starts_at, status ON events
    FOR EACH ROW EXECUTE FUNCTION event_reminders_follow();
