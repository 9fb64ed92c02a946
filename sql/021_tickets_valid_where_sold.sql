-- Issue 14: tickets sold and admitted only where they are valid. A check-in names why a ticket was refused; a
-- free ticket type may limit what one contact holds (NULL: max_per_order in total for free types).

ALTER TABLE check_ins DROP CONSTRAINT check_ins_outcome_check;
ALTER TABLE check_ins ADD CONSTRAINT check_ins_outcome_check CHECK (outcome IN (
    'admitted', 'already_used', 'cancelled',
    'wrong_event',      -- a ticket of another event than the scanner's
    'event_cancelled', 'event_ended', 'not_open_yet', 'event_not_published'));

ALTER TABLE ticket_types ADD COLUMN max_per_contact INTEGER CHECK (max_per_contact IS NULL OR max_per_contact > 0);

-- The contact's tickets of a type (the per-contact limit counts them and what they hold).
CREATE INDEX idx_tickets_contact_type ON tickets(contact_id, ticket_type_id);
