-- Worker processes announce themselves here; inbound and outbound shards are divided among the live ones.
-- Not tenant data: written by the owner's connection only.
CREATE TABLE worker_heartbeats (
    worker_id VARCHAR(100) PRIMARY KEY,
    role VARCHAR(20) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    shards INTEGER[] NOT NULL DEFAULT '{}',
    in_flight INTEGER NOT NULL DEFAULT 0,
    processed BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
SELECT updated_at_trigger('worker_heartbeats');

-- Wakes the outbox relay as soon as a reply commits (it also polls, so a missed notification only delays).
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();
