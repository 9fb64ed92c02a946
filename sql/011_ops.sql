-- Operations: the order in which the engine stored messages, as evidence of per-contact processing order.
-- An inbound message is inserted while its transaction holds the contact's and the conversation's row locks,
-- so for one contact processed_seq increases in the order the engine processed its messages (created_at is
-- WhatsApp's timestamp, with one-second resolution). Added without a table rewrite: existing rows stay NULL.
CREATE SEQUENCE messages_processed_seq;
ALTER TABLE messages ADD COLUMN processed_seq BIGINT;
ALTER TABLE messages ALTER COLUMN processed_seq SET DEFAULT nextval('messages_processed_seq');
ALTER SEQUENCE messages_processed_seq OWNED BY messages.processed_seq;
