-- A reminder or a programme item that cannot become a broadcast (no text nor template, a text too long, a bad
-- media URL: what the content import checks, but rows can come from elsewhere) is marked 'refused' with the
-- reason, instead of failing the scheduler's round for every organisation (engine/reminders.py,
-- engine/programmes.py). Fixing the content and importing it again makes it pending (or scheduled) again.
ALTER TABLE event_reminders DROP CONSTRAINT event_reminders_status_check;
ALTER TABLE event_reminders
    ADD CONSTRAINT event_reminders_status_check
        CHECK (status IN ('pending', 'fired', 'cancelled', 'missed', 'refused')),
    ADD COLUMN refused_reason TEXT;
ALTER TABLE content_items ADD COLUMN refused_reason TEXT;
