-- The relay polls the outbox instead of being woken by NOTIFY: a transaction that NOTIFYs takes a
-- database-wide lock from its commit until the commit is flushed, so every reply-writing transaction of
-- every organisation committed one at a time behind it. A poll every few milliseconds on the partial index
-- of unrelayed rows costs next to nothing.
DROP TRIGGER IF EXISTS trg_outbox_notify ON outbox;
DROP FUNCTION IF EXISTS notify_outbox();
