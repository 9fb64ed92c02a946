-- Issue 13: several deployments (each its own BROKER_PREFIX and shard counts) on one database stay apart.
--
-- What a deployment's relay, timer scanner and mailer take is what that deployment wrote: the rows carry their
-- writer's deployment, from the connection setting `chatnation.deployment` that the engine's pools set
-- (engine/db.py create_pool). A row written without it (psql, an older engine) has none: the first of those
-- background jobs to see it adopts it into its own deployment, in one UPDATE, so it is taken exactly once.
-- Rows already here when this runs have none either, so the first deployment to run after it takes them.

ALTER TABLE outbox ADD COLUMN deployment VARCHAR(64)
    DEFAULT NULLIF(current_setting('chatnation.deployment', true), '');
CREATE INDEX idx_outbox_pending_by_deployment ON outbox(deployment, lane, id) WHERE relayed_at IS NULL;

ALTER TABLE conversation_timers ADD COLUMN deployment VARCHAR(64)
    DEFAULT NULLIF(current_setting('chatnation.deployment', true), '');
CREATE INDEX idx_timers_due_by_deployment ON conversation_timers(deployment, due_at) WHERE status = 'pending';

ALTER TABLE ticket_emails ADD COLUMN deployment VARCHAR(64)
    DEFAULT NULLIF(current_setting('chatnation.deployment', true), '');
CREATE INDEX idx_ticket_emails_due_by_deployment ON ticket_emails(deployment, next_attempt_at)
    WHERE status = 'pending';

-- Shard leases: a worker divides a role's shards only with the live workers of its own deployment that count
-- the same number of shards (engine/shards.py).
ALTER TABLE worker_heartbeats ADD COLUMN deployment VARCHAR(64) NOT NULL DEFAULT '',
                              ADD COLUMN shard_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX idx_worker_heartbeats_lease ON worker_heartbeats(deployment, role, shard_count, heartbeat_at);
