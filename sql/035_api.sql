-- The REST API (engine/api/, docs/api.md): authenticating a key, and requests made idempotent by a key.

-- A request's key, by the SHA-256 of the key it presented, before the tenant is known (the application role
-- cannot read api_keys without one). It answers only for the one row whose hash the caller holds; the key's
-- use is recorded afterwards in the request's own transaction, under row-level security (engine/api/auth.py).
-- Run as chatnation_definer (sql/017, engine/migrate.py), which may read these columns and nothing else.
CREATE FUNCTION api_key_use(p_hash text)
RETURNS TABLE (id uuid, organization_id uuid, scopes jsonb, expires_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT k.id, k.organization_id, k.scopes, k.expires_at, k.revoked_at
    FROM public.api_keys k JOIN public.organizations o ON o.id = k.organization_id
    WHERE k.key_hash = p_hash AND o.status <> 'suspended'
$$;
GRANT SELECT (id, organization_id, key_hash, scopes, expires_at, revoked_at) ON public.api_keys TO chatnation_definer;
DROP POLICY IF EXISTS definer_routes ON api_keys;
CREATE POLICY definer_routes ON api_keys FOR SELECT TO chatnation_definer USING (true);
REVOKE EXECUTE ON FUNCTION api_key_use(text) FROM PUBLIC;

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
