-- Status webhooks applied set-based, a batch per statement (issue 15): a broadcast brings three status webhooks
-- per message it sends (sent, delivered, read), and one call and one commit each (apply_status_webhook) cost
-- more of PostgreSQL than the send itself. apply_status_webhooks takes the webhooks of one organisation, at most
-- one per message, and does what advance_message_status does for each, with one statement per table:
--   1. the messages, locked in id order (every batch takes them in one order: no deadlock between batches), their
--      current status read under the lock;
--   2. each message whose status moves (queued < sent < delivered < read; failed is terminal, so a late
--      'delivered' never overwrites 'read' or 'failed') updated, with its time and error;
--   3. their broadcasts' recipients;
--   4. the broadcasts' counters, summed per broadcast (every stage passed counts, so a skipped 'delivered' is
--      still counted), last, just before the one-statement transaction commits: the shared row is held only
--      from there to the commit, and a batch of many messages moves it once.
-- Lock order as every other writer of these rows: the messages, their recipients, the broadcasts. 'failed' is
-- not taken here (it refunds a broadcast recipient's tokens with its ledger row: advance_message_status, one
-- at a time). A webhook redelivered, or its batch run again, finds its message at or past the status: it moves
-- nothing twice. One boolean per webhook, in order: NULL when no reply of the organisation has that WhatsApp
-- id (yet), else whether it moved.
CREATE OR REPLACE FUNCTION apply_status_webhooks(p_org uuid, p_wa_ids text[], p_new text[], p_at timestamptz[],
                                                 p_code int[], p_title text[])
RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE
    stages CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read'];
    n int := cardinality(p_wa_ids);
    v_found int[];
    v_ids uuid[];
    v_old text[];
    v_moved int[];
    v_m_ids uuid[];
    v_m_broadcasts uuid[];
    v_m_old text[];
    v_m_new text[];
    v_m_code int[];
BEGIN
    PERFORM enter_tenant(p_org);
    IF n IS NULL OR n = 0 THEN
        RETURN '{}';
    END IF;
    IF COALESCE(cardinality(p_new), -1) <> n OR COALESCE(cardinality(p_at), -1) <> n
       OR COALESCE(cardinality(p_code), -1) <> n OR COALESCE(cardinality(p_title), -1) <> n THEN
        RAISE EXCEPTION 'the arrays of a status batch differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(p_new) AS s(new) WHERE s.new IS NULL OR s.new NOT IN ('sent', 'delivered', 'read')) THEN
        RAISE EXCEPTION 'a status batch takes sent, delivered and read' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(DISTINCT w) FROM unnest(p_wa_ids) AS w) <> n THEN
        RAISE EXCEPTION 'a status batch takes one webhook per message' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    WITH s AS (SELECT * FROM unnest(p_wa_ids) WITH ORDINALITY AS s(wa_id, ord)),
    locked AS (SELECT m.id, COALESCE(m.wa_status, 'queued') AS old, s.ord::int AS ord
               FROM s JOIN messages m ON m.organization_id = p_org AND m.wa_message_id = s.wa_id
               WHERE m.direction = 'outbound'
               ORDER BY m.id
               FOR UPDATE OF m)
    SELECT array_agg(ord), array_agg(id), array_agg(old) INTO v_found, v_ids, v_old FROM locked;

    WITH t AS (SELECT * FROM unnest(v_found, v_ids, v_old) AS t(ord, id, old)),
    mv AS (SELECT t.ord, t.id, t.old, p_new[t.ord] AS new, COALESCE(p_at[t.ord], now()) AS at,
                  p_code[t.ord] AS code, p_title[t.ord] AS title
           FROM t
           WHERE t.old <> 'failed' AND array_position(stages, p_new[t.ord]) > array_position(stages, t.old)),
    upd AS (UPDATE messages m SET wa_status = mv.new,
                                  sent_at = CASE WHEN mv.new = 'sent' THEN mv.at ELSE m.sent_at END,
                                  delivered_at = CASE WHEN mv.new = 'delivered' THEN mv.at ELSE m.delivered_at END,
                                  read_at = CASE WHEN mv.new = 'read' THEN mv.at ELSE m.read_at END,
                                  error_code = COALESCE(mv.code, m.error_code),
                                  error_title = COALESCE(mv.title, m.error_title)
            FROM mv WHERE m.id = mv.id
            RETURNING mv.ord, m.id, m.broadcast_id, mv.old, mv.new, mv.code)
    SELECT array_agg(ord), array_agg(id), array_agg(broadcast_id), array_agg(old), array_agg(new), array_agg(code)
    INTO v_moved, v_m_ids, v_m_broadcasts, v_m_old, v_m_new, v_m_code
    FROM upd;

    IF EXISTS (SELECT FROM unnest(v_m_broadcasts) AS b WHERE b IS NOT NULL) THEN
        UPDATE broadcast_recipients r SET status = x.new, error_code = COALESCE(x.code, r.error_code)
        FROM unnest(v_m_ids, v_m_broadcasts, v_m_new, v_m_code) AS x(id, broadcast_id, new, code)
        WHERE x.broadcast_id IS NOT NULL AND r.message_id = x.id;
        IF (SELECT count(DISTINCT b) FROM unnest(v_m_broadcasts) AS b) > 1 THEN
            PERFORM FROM broadcasts WHERE id = ANY(v_m_broadcasts) ORDER BY id FOR UPDATE;  -- in one order
        END IF;
        UPDATE broadcasts b SET sent_count = b.sent_count + d.sent,
                                delivered_count = b.delivered_count + d.delivered,
                                read_count = b.read_count + d.read
        FROM (SELECT x.broadcast_id,
                     sum((x.o < 2 AND x.r >= 2)::int) AS sent,
                     sum((x.o < 3 AND x.r >= 3)::int) AS delivered,
                     sum((x.o < 4 AND x.r >= 4)::int) AS read
              FROM (SELECT u.broadcast_id, array_position(stages, u.old) AS o, array_position(stages, u.new) AS r
                    FROM unnest(v_m_broadcasts, v_m_old, v_m_new) AS u(broadcast_id, old, new)
                    WHERE u.broadcast_id IS NOT NULL) AS x
              GROUP BY x.broadcast_id) AS d
        WHERE b.id = d.broadcast_id;
    END IF;

    RETURN (SELECT array_agg(CASE WHEN f.ord IS NULL THEN NULL ELSE m.ord IS NOT NULL END ORDER BY s.ord)
            FROM generate_series(1, n) AS s(ord)
            LEFT JOIN unnest(v_found) AS f(ord) ON f.ord = s.ord
            LEFT JOIN unnest(v_moved) AS m(ord) ON m.ord = s.ord);
END
$$;
