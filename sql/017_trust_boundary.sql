-- Issue 13: the application role cannot become the owner (docs/schema.md, "Tenant isolation"). The database
-- and role-dependent grants (TEMP, EXECUTE to the application role, which tables it may write) are made by the
-- migration runner, engine/migrate.py, which knows the role's name; this file does what needs no names.

-- SECURITY DEFINER functions run as chatnation_definer: no login, no superuser, no RLS bypass; it reads the few
-- columns its functions read, through policies that let it (and only it) route across tenants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chatnation_definer') THEN
        BEGIN
            CREATE ROLE chatnation_definer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's runner made it at the same moment: roles are cluster-wide
        END;
    END IF;
    -- an owner that is not a superuser must be able to hand its functions over
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'chatnation_definer', 'SET') THEN
        BEGIN
            EXECUTE format('GRANT chatnation_definer TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role chatnation_definer exists and % cannot act as it', current_user
                USING HINT = format('as a superuser: GRANT chatnation_definer TO %I', current_user);
        END;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO chatnation_definer;
-- A new owner needs CREATE on the schema for ALTER ... OWNER TO when the runner is not a superuser: held only
-- for the length of this migration's transaction (revoked below).
GRANT CREATE ON SCHEMA public TO chatnation_definer;

-- Nobody but the owner creates anything in the schema (PostgreSQL 15 and later already say so).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Routing an inbound message: which organisation owns this WhatsApp number.
CREATE OR REPLACE FUNCTION org_by_phone_number_id(p_phone_number_id TEXT) RETURNS UUID
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT o.id FROM public.organizations o
    WHERE o.whatsapp_phone_id = p_phone_number_id AND o.status <> 'suspended'
$$;
-- whatsapp_business_id: routing the template webhooks (orgs_by_business_account_id, sql/025)
GRANT SELECT (id, whatsapp_phone_id, whatsapp_business_id, status) ON public.organizations TO chatnation_definer;
DROP POLICY IF EXISTS definer_routes ON organizations;
CREATE POLICY definer_routes ON organizations FOR SELECT TO chatnation_definer USING (true);
ALTER FUNCTION org_by_phone_number_id(text) OWNER TO chatnation_definer;
REVOKE EXECUTE ON FUNCTION org_by_phone_number_id(text) FROM PUBLIC;

-- Routing a Daraja callback, which names only its CheckoutRequestID.
CREATE OR REPLACE FUNCTION payment_route(p_checkout_request_id TEXT)
RETURNS TABLE (organization_id UUID, contact_id UUID, payment_request_id UUID)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT p.organization_id, p.contact_id, p.id FROM public.payment_requests p
    WHERE p.checkout_request_id = p_checkout_request_id
$$;
GRANT SELECT (organization_id, contact_id, id, checkout_request_id) ON public.payment_requests TO chatnation_definer;
DROP POLICY IF EXISTS definer_routes ON payment_requests;
CREATE POLICY definer_routes ON payment_requests FOR SELECT TO chatnation_definer USING (true);
ALTER FUNCTION payment_route(text) OWNER TO chatnation_definer;
REVOKE EXECUTE ON FUNCTION payment_route(text) FROM PUBLIC;

REVOKE CREATE ON SCHEMA public FROM chatnation_definer;

-- A function that sets the tenant itself (sql/016) never moves a transaction that already has one: called in
-- organisation A's transaction with B's id, it refuses, and the transaction stays A's (aborted).
CREATE OR REPLACE FUNCTION enter_tenant(p_org uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_current text := NULLIF(current_setting('app.current_org', true), '');
BEGIN
    IF p_org IS NULL THEN
        RAISE EXCEPTION 'no organisation given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_current IS NOT NULL AND v_current::uuid IS DISTINCT FROM p_org THEN
        RAISE EXCEPTION 'this transaction belongs to organisation %, not %', v_current, p_org
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('app.current_org', p_org::text, true);
END
$$;

CREATE OR REPLACE FUNCTION apply_status_webhook(p_org uuid, p_wa_message_id text, p_new text,
                                                p_at timestamptz DEFAULT NULL, p_code int DEFAULT NULL,
                                                p_title text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    target uuid;
BEGIN
    PERFORM enter_tenant(p_org);
    SELECT id INTO target FROM messages
    WHERE organization_id = p_org AND wa_message_id = p_wa_message_id AND direction = 'outbound';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN advance_message_status(target, p_new, p_at, p_code, p_title);
END
$$;

CREATE OR REPLACE FUNCTION reply_unsent(p_org uuid, p_message uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM enter_tenant(p_org);
    RETURN EXISTS (SELECT FROM messages
                   WHERE id = p_message AND wa_message_id IS NULL AND wa_status IS DISTINCT FROM 'failed');
END
$$;

CREATE OR REPLACE FUNCTION record_reply_sent(p_org uuid, p_message uuid, p_wa_message_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM enter_tenant(p_org);
    UPDATE messages SET wa_message_id = p_wa_message_id WHERE id = p_message;
    PERFORM advance_message_status(p_message, 'sent');
END
$$;

-- Heartbeats are dated by the database, never by the writer: a heartbeat is at most now, so every one expires
-- (a row dated in the future held its shards for good). The application role cannot write the table at all
-- (engine/migrate.py); the owner's writes are dated here too. A row an earlier writer dated in the future is
-- forged: it goes (a real worker writes its row again at its next heartbeat).
CREATE OR REPLACE FUNCTION worker_heartbeats_dated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.heartbeat_at := now();
    IF TG_OP = 'INSERT' THEN
        NEW.started_at := now();
    ELSE
        NEW.started_at := LEAST(OLD.started_at, now());
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS trg_worker_heartbeats_dated ON worker_heartbeats;
CREATE TRIGGER trg_worker_heartbeats_dated BEFORE INSERT OR UPDATE ON worker_heartbeats
    FOR EACH ROW EXECUTE FUNCTION worker_heartbeats_dated();
DELETE FROM worker_heartbeats WHERE heartbeat_at > now() OR started_at > now();
