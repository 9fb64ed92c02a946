-- The REST API (engine/api/, docs/api.md): authenticating a key, and requests made idempotent by a key.

-- A request's key, by the SHA-256 of the key it presented, before the tenant is known (the application role
-- cannot read api_keys without one). It answers only for the one row whose hash the caller holds, and
-- records the use of a key that is neither revoked nor expired (at most once per ten seconds).
CREATE FUNCTION api_key_use(p_hash text)
RETURNS TABLE (id uuid, organization_id uuid, scopes jsonb, expires_at timestamptz, revoked_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
    WITH found AS (
        SELECT k.id, k.organization_id, k.scopes, k.expires_at, k.revoked_at, k.last_used_at
        FROM api_keys k JOIN organizations o ON o.id = k.organization_id
        WHERE k.key_hash = p_hash AND o.status <> 'suspended'
    ), used AS (
        UPDATE api_keys k SET last_used_at = now()
        FROM found f
        WHERE k.id = f.id AND f.revoked_at IS NULL AND (f.expires_at IS NULL OR f.expires_at > now())
          AND (f.last_used_at IS NULL OR f.last_used_at < now() - interval '10 seconds')
    )
    SELECT id, organization_id, scopes, expires_at, revoked_at FROM found
$$;

-- A POST that creates something, with an Idempotency-Key: the first request's response, stored in the
-- transaction that created it; a retry with the same key gets it again, a different request with it a 422.
CREATE TABLE api_idempotency (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    api_key_id UUID REFERENCES api_keys(id) ON DELETE SET NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    method VARCHAR(10) NOT NULL,
    path TEXT NOT NULL,
    request_hash VARCHAR(64) NOT NULL,
    status_code INTEGER NOT NULL,
    response JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (organization_id, idempotency_key)
);
CREATE INDEX idx_api_idempotency_created ON api_idempotency(created_at);
SELECT tenant_table('api_idempotency');
