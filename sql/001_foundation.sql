-- Extensions and the helpers every later migration uses.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The tenant of the current transaction (SET LOCAL app.current_org); NULL when unset, so no rows match.
CREATE OR REPLACE FUNCTION current_org() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('app.current_org', true), '')::uuid
$$;

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Marks a table as tenant data: row-level security enabled and forced (the owner too), one policy on
-- organization_id for reads and writes, and updated_at kept by the database.
CREATE OR REPLACE FUNCTION tenant_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS org_isolation ON %s', tbl);
    EXECUTE format('CREATE POLICY org_isolation ON %s USING (organization_id = current_org()) '
                   'WITH CHECK (organization_id = current_org())', tbl);
    PERFORM updated_at_trigger(tbl);
END
$$;

CREATE OR REPLACE FUNCTION updated_at_trigger(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS trg_updated_at ON %s', tbl);
    EXECUTE format('CREATE TRIGGER trg_updated_at BEFORE UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION set_updated_at()', tbl);
END
$$;
