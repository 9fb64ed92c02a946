-- The send-pacing functions of 026 set the tenant themselves with set_config: called inside a transaction of
-- organisation A with B's id they would move the rest of it to B. Like every function that enters a tenant
-- (017), they go through enter_tenant, which refuses that. Bodies otherwise unchanged.
CREATE OR REPLACE FUNCTION take_send_slots(p_org uuid, p_number text, p_wanted int, p_interval float8,
                                           p_horizon float8 DEFAULT NULL)
RETURNS TABLE (first_at timestamptz, granted int, now_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_next timestamptz;
    v_now timestamptz;
    v_start timestamptz;
    v_n int;
BEGIN
    PERFORM enter_tenant(p_org);  -- refuses to move a transaction that belongs to another organisation
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT s.next_at INTO v_next FROM send_pacing s WHERE s.phone_number_id = p_number FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO send_pacing (phone_number_id, organization_id, next_at)
        VALUES (p_number, p_org, clock_timestamp()) ON CONFLICT (phone_number_id) DO NOTHING;
        SELECT s.next_at INTO v_next FROM send_pacing s WHERE s.phone_number_id = p_number FOR UPDATE;
    END IF;
    v_now := clock_timestamp();  -- after the lock: time spent waiting for it is not borrowed
    v_start := GREATEST(v_next, v_now);
    IF p_horizon IS NULL THEN
        v_n := p_wanted;
    ELSE
        v_n := LEAST(p_wanted, GREATEST(0,
                 floor(extract(epoch FROM (v_now - v_start)) / p_interval + p_horizon / p_interval)::int + 1));
    END IF;
    IF v_n > 0 THEN
        UPDATE send_pacing SET next_at = v_start + make_interval(secs => v_n * p_interval)
        WHERE phone_number_id = p_number;
    END IF;
    RETURN QUERY SELECT v_start, v_n, v_now;
END
$$;

-- A send whose answer came back later than its slot plus the spacing's margin may have reached WhatsApp that
-- late: the send p_rate slots after it must then leave more than a second after p_bound. The slots already
-- granted since p_slot are counted (as if contiguous: a gap only makes this shift more than needed); those
-- still to come start late enough.
CREATE OR REPLACE FUNCTION report_late_send(p_org uuid, p_number text, p_slot timestamptz, p_bound timestamptz,
                                            p_interval float8, p_rate int)
RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    v_next timestamptz;
    v_granted int;
    v_wanted timestamptz;
BEGIN
    PERFORM enter_tenant(p_org);  -- refuses to move a transaction that belongs to another organisation
    SELECT next_at INTO v_next FROM send_pacing WHERE phone_number_id = p_number FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    v_granted := GREATEST(0, round(extract(epoch FROM (v_next - p_slot)) / p_interval)::int - 1);
    IF v_granted >= p_rate THEN
        RETURN -1;  -- too late to make up for: the caller logs it
    END IF;
    v_wanted := p_bound + interval '1 second' + interval '1 millisecond'
                - make_interval(secs => (p_rate - v_granted - 1) * p_interval);
    IF v_wanted > v_next THEN
        UPDATE send_pacing SET next_at = v_wanted WHERE phone_number_id = p_number;
        RETURN extract(epoch FROM (v_wanted - v_next));
    END IF;
    RETURN 0;
END
$$;

-- Meta said the number's throughput was reached (130429): no slot for anyone before p_seconds from now.
CREATE OR REPLACE FUNCTION hold_send_slots(p_org uuid, p_number text, p_seconds float8) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM enter_tenant(p_org);  -- refuses to move a transaction that belongs to another organisation
    INSERT INTO send_pacing (phone_number_id, organization_id, next_at)
    VALUES (p_number, p_org, clock_timestamp() + make_interval(secs => p_seconds))
    ON CONFLICT (phone_number_id) DO UPDATE
        SET next_at = GREATEST(send_pacing.next_at, EXCLUDED.next_at);
END
$$;
