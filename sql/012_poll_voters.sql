-- How many contacts have voted in a poll, kept with each vote: counting poll_votes on every vote grows with
-- the poll (a radio poll has tens of thousands) and ran while the poll's row was locked.
ALTER TABLE polls ADD COLUMN voter_count INTEGER NOT NULL DEFAULT 0 CHECK (voter_count >= 0);
UPDATE polls p SET voter_count = (SELECT count(DISTINCT contact_id) FROM poll_votes v WHERE v.poll_id = p.id);
