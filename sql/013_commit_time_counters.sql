-- Counters that every transaction of an organisation shares (its wallet, a poll's tallies, a survey's
-- response count) are applied by deferred triggers, at COMMIT: their rows are then locked only while the
-- server commits, not across the client's remaining round trips. A radio poll's voters and a busy wallet
-- would otherwise queue on one row for the length of each other's whole transactions.

-- Which one of a voter's rows counts them in polls.voter_count (a voter of an allow_multiple poll has
-- several rows; exactly one carries the flag).
ALTER TABLE poll_votes ADD COLUMN counts_voter BOOLEAN NOT NULL DEFAULT false;
UPDATE poll_votes v SET counts_voter = true
WHERE v.id = (SELECT min(w.id::text)::uuid FROM poll_votes w WHERE w.poll_id = v.poll_id AND w.contact_id = v.contact_id);

-- A contact's vote: validated and written in one round trip; the tallies it returns are the committed
-- ones plus this vote (the counters themselves move at commit, below). Rule: a new vote replaces the old.
CREATE OR REPLACE FUNCTION cast_poll_vote(p_poll uuid, p_org uuid, p_contact uuid, p_options text[],
                                          p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    poll record;
    known text[];
    old text[];
    removed text[];
    added text[];
    flag_kept boolean;
BEGIN
    SELECT status, ends_at, voter_count INTO poll FROM polls WHERE id = p_poll;
    IF NOT FOUND OR poll.status <> 'active' OR (poll.ends_at IS NOT NULL AND poll.ends_at <= p_now) THEN
        RETURN jsonb_build_object('rejected', 'closed');
    END IF;
    -- a poll written with only its JSON options gets its relational rows on the first vote
    INSERT INTO poll_options (poll_id, id, organization_id, text, votes, sort_order)
    SELECT p_poll, o->>'id', p_org, o->>'text', COALESCE((o->>'votes')::int, 0), ord
    FROM polls, jsonb_array_elements(options) WITH ORDINALITY AS x(o, ord)
    WHERE polls.id = p_poll AND NOT EXISTS (SELECT 1 FROM poll_options WHERE poll_id = p_poll)
    ON CONFLICT DO NOTHING;
    SELECT array_agg(id) INTO known FROM poll_options WHERE poll_id = p_poll;
    IF cardinality(p_options) IS NULL OR cardinality(p_options) = 0 OR NOT (p_options <@ known) THEN
        RETURN jsonb_build_object('rejected', 'invalid_option');
    END IF;
    SELECT COALESCE(array_agg(option_id), '{}') INTO old
    FROM poll_votes WHERE poll_id = p_poll AND contact_id = p_contact;
    removed := ARRAY(SELECT unnest(old) EXCEPT SELECT unnest(p_options) ORDER BY 1);
    added := ARRAY(SELECT unnest(p_options) EXCEPT SELECT unnest(old) ORDER BY 1);
    IF cardinality(removed) > 0 OR cardinality(added) > 0 THEN
        SELECT EXISTS (SELECT 1 FROM poll_votes WHERE poll_id = p_poll AND contact_id = p_contact
                         AND counts_voter AND option_id <> ALL (removed)) INTO flag_kept;
        DELETE FROM poll_votes WHERE poll_id = p_poll AND contact_id = p_contact AND option_id = ANY (removed);
        INSERT INTO poll_votes (organization_id, poll_id, contact_id, option_id, counts_voter)
        SELECT p_org, p_poll, p_contact, a, NOT flag_kept AND ord = 1
        FROM unnest(added) WITH ORDINALITY AS x(a, ord);
    END IF;
    RETURN jsonb_build_object(
        'tallies', (SELECT jsonb_object_agg(id, votes + CASE WHEN id = ANY (added) THEN 1
                                                             WHEN id = ANY (removed) THEN -1 ELSE 0 END)
                    FROM poll_options WHERE poll_id = p_poll),
        'voters', poll.voter_count + CASE WHEN cardinality(old) = 0 THEN 1 ELSE 0 END,
        'changed', cardinality(old) > 0 AND (cardinality(removed) > 0 OR cardinality(added) > 0));
END
$$;

-- At commit: a vote row moves its option's tally, the poll's voter count and the JSON copy in polls.options.
-- The poll's row is locked first, so concurrent commits take the option rows in one order (no deadlock).
CREATE OR REPLACE FUNCTION poll_votes_tally() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v poll_votes;
    delta int;
BEGIN
    IF TG_OP = 'INSERT' THEN v := NEW; delta := 1; ELSE v := OLD; delta := -1; END IF;
    PERFORM 1 FROM polls WHERE id = v.poll_id FOR NO KEY UPDATE;
    UPDATE poll_options SET votes = votes + delta WHERE poll_id = v.poll_id AND id = v.option_id;
    UPDATE polls SET voter_count = voter_count + CASE WHEN v.counts_voter THEN delta ELSE 0 END,
                     options = (SELECT jsonb_agg(jsonb_build_object('id', id, 'text', text, 'votes', votes)
                                                 ORDER BY sort_order, id)
                                FROM poll_options WHERE poll_id = v.poll_id)
    WHERE id = v.poll_id;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER trg_poll_votes_tally AFTER INSERT OR DELETE ON poll_votes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION poll_votes_tally();

-- At commit: a completed response counts once in its survey.
CREATE OR REPLACE FUNCTION survey_responses_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE surveys SET response_count = response_count + 1 WHERE id = NEW.survey_id;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER trg_survey_responses_count AFTER UPDATE OF status ON survey_responses
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM 'completed' AND NEW.status = 'completed')
    EXECUTE FUNCTION survey_responses_count();

-- At commit: an outbound reply with a price is paid from the wallet, with its ledger row. The engine
-- writes no more replies than the wallet can pay (it checks under the wallet's lock when the balance is
-- near the end); if concurrent spending beat that check, positive_balance fails the commit and the event
-- is run again, exactly.
CREATE OR REPLACE FUNCTION messages_pay_reply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    w record;
BEGIN
    UPDATE wallets SET balance = balance - NEW.tokens_consumed,
                       lifetime_consumed = lifetime_consumed + NEW.tokens_consumed
    WHERE organization_id = NEW.organization_id
    RETURNING id, balance INTO w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organisation % has no wallet', NEW.organization_id USING ERRCODE = 'check_violation',
            CONSTRAINT = 'positive_balance';
    END IF;
    INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                    module, action, reference_id)
    VALUES (w.id, NEW.organization_id, 'debit', -NEW.tokens_consumed, w.balance + NEW.tokens_consumed, w.balance,
            'messaging', 'outbound_reply', NEW.id);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER trg_messages_pay_reply AFTER INSERT ON messages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.direction = 'outbound' AND NEW.tokens_consumed > 0)
    EXECUTE FUNCTION messages_pay_reply();
