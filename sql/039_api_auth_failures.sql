-- Refused API authentications per client address, shared by every API process (engine/api/auth.py): a key
-- guessed against N processes behind a balancer meets one limit, not N. No tenant owns these rows (a refused
-- key names no organisation) and they hold no tenant data: the SHA-256 of the client's address and when. The
-- application role has no right on the table; it calls two SECURITY DEFINER functions, run as
-- chatnation_definer (owner and search path set by the migration runner, EXECUTE for the application role
-- only), which is the one role that may read and write it (tests/test_trust_boundary.py allow-lists both).

CREATE TABLE api_auth_failures (
    client_hash BYTEA NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
SELECT updated_at_trigger('api_auth_failures');
CREATE INDEX idx_api_auth_failures_client ON api_auth_failures(client_hash, failed_at);
CREATE INDEX idx_api_auth_failures_at ON api_auth_failures(failed_at);
GRANT SELECT, INSERT, DELETE ON public.api_auth_failures TO chatnation_definer;

-- Seconds this client must still wait (0: it may go on): it had p_limit refusals within p_window seconds,
-- until the p_limit-th newest ages out of the window.
CREATE FUNCTION api_auth_blocked_for(p_client text, p_limit integer, p_window double precision)
RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT COALESCE(max(GREATEST(0, p_window - extract(epoch FROM now() - f.failed_at))), 0)::double precision
    FROM (SELECT a.failed_at FROM public.api_auth_failures a
          WHERE a.client_hash = pg_catalog.sha256(pg_catalog.convert_to(left(p_client, 200), 'UTF8'))
            AND a.failed_at > now() - make_interval(secs => p_window)
          ORDER BY a.failed_at DESC OFFSET GREATEST(p_limit, 1) - 1 LIMIT 1) AS f
$$;
REVOKE EXECUTE ON FUNCTION api_auth_blocked_for(text, integer, double precision) FROM PUBLIC;

-- One refusal of this client now; rows older than the window go (this client's, and a bounded batch of
-- everyone's), so the table holds about a window's refusals.
CREATE FUNCTION api_auth_failed(p_client text, p_window double precision)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    WITH old AS (
        DELETE FROM public.api_auth_failures
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM public.api_auth_failures
                                WHERE failed_at < now() - make_interval(secs => GREATEST(p_window, 1))
                                LIMIT 100))
    )
    INSERT INTO public.api_auth_failures (client_hash)
    VALUES (pg_catalog.sha256(pg_catalog.convert_to(left(p_client, 200), 'UTF8')))
$$;
REVOKE EXECUTE ON FUNCTION api_auth_failed(text, double precision) FROM PUBLIC;
