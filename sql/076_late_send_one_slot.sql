-- A late send costs one slot, not its lateness (issue 15). A send answered later than its slot plus the spacing's
-- margin took its place in the number's sequence late: it left its own slot empty and arrived among the later
-- ones. With every other send within the margin of its slot, a window of one second then holds at most one send
-- more than the spacing allows, and only the windows from its slot plus the margin up to its arrival; removing
-- one slot that lies in all of them (after the arrival less the margin, before its slot plus p_rate slots)
-- restores the limit. The next free slot is that place: next_at moves by one interval, whatever the lateness.
-- Several late sends each remove one of their own. When the next free slot is already past that range (the
-- answer came back too late), 030's shift applies: the send p_rate slots after it leaves more than a second
-- after p_bound. Of the two, the smaller move; 030 moved by the lateness beyond the margin every time, which
-- on a loaded machine cost more than a slot per late answer.
CREATE OR REPLACE FUNCTION report_late_send(p_org uuid, p_number text, p_slot timestamptz, p_bound timestamptz,
                                            p_interval float8, p_rate int)
RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    v_next timestamptz;
    v_from timestamptz;
    v_granted int;
    v_wanted timestamptz;
    v_one timestamptz;
BEGIN
    PERFORM enter_tenant(p_org);  -- refuses to move a transaction that belongs to another organisation
    SELECT next_at INTO v_next FROM send_pacing WHERE phone_number_id = p_number FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    v_granted := GREATEST(0, round(extract(epoch FROM (v_next - p_slot)) / p_interval)::int - 1);
    v_wanted := p_bound + interval '1 second' + interval '1 millisecond'
                - make_interval(secs => (p_rate - v_granted - 1) * p_interval);
    IF v_granted < p_rate AND v_wanted <= v_next THEN
        RETURN 0;  -- the sends after it are spaced enough already
    END IF;
    v_from := GREATEST(v_next, clock_timestamp(), p_bound);  -- no slot is handed out in the past
    IF v_from < p_slot + make_interval(secs => p_rate * p_interval) THEN
        v_one := v_from + make_interval(secs => p_interval);
        IF v_granted < p_rate AND v_wanted < v_one THEN
            v_one := v_wanted;
        END IF;
    ELSIF v_granted < p_rate THEN
        v_one := v_wanted;
    ELSE
        RETURN -1;  -- too late to make up for: the caller logs it
    END IF;
    UPDATE send_pacing SET next_at = v_one WHERE phone_number_id = p_number;
    RETURN extract(epoch FROM (v_one - v_next));
END
$$;
