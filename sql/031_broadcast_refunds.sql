-- A broadcast send that fails for good gives its tokens back (issue 15).
--
-- Each queued recipient was debited its price from the broadcast's reservation (engine/broadcast_money.py).
-- When its message fails (the sender's permanent error or a 'failed' status webhook, both through
-- advance_message_status), the same transaction marks the recipient refunded (one conditional UPDATE: only a
-- recipient not refunded yet, with tokens, is returned) and, only if that UPDATE returned the row, writes one
-- 'refund' ledger row crediting the wallet's balance and counts it on the broadcast. A second 'failed' (the
-- status webhook redelivered, or both the sender's error and a status) finds the message failed already and
-- the recipient refunded: nothing moves twice.
--
-- Lock order, as every other writer of these rows: the message, its recipient, the broadcast, then the wallet
-- (a batch's debits and a release also take the broadcast's row before the wallet's).

ALTER TABLE broadcast_recipients ADD COLUMN refunded_at TIMESTAMPTZ;
ALTER TABLE broadcasts
    ADD COLUMN tokens_refunded INTEGER NOT NULL DEFAULT 0 CHECK (tokens_refunded >= 0),
    ADD CONSTRAINT broadcasts_refunds CHECK (tokens_refunded <= tokens_spent);

CREATE OR REPLACE FUNCTION advance_message_status(p_message uuid, p_new text, p_at timestamptz DEFAULT NULL,
                                                  p_code int DEFAULT NULL, p_title text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    stages CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read'];
    m record;
    old text;
    old_rank int;
    new_rank int;
    refund int := 0;
    at timestamptz := COALESCE(p_at, now());
BEGIN
    IF p_new <> 'failed' AND array_position(stages, p_new) IS NULL THEN
        RAISE EXCEPTION 'unknown message status %', p_new USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT wa_status, broadcast_id, organization_id INTO m FROM messages WHERE id = p_message FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    old := COALESCE(m.wa_status, 'queued');
    old_rank := array_position(stages, old);
    new_rank := array_position(stages, p_new);
    IF old = 'failed' OR (p_new <> 'failed' AND new_rank <= old_rank) THEN
        RETURN false;
    END IF;
    UPDATE messages SET wa_status = p_new,
                        sent_at = CASE WHEN p_new = 'sent' THEN at ELSE sent_at END,
                        delivered_at = CASE WHEN p_new = 'delivered' THEN at ELSE delivered_at END,
                        read_at = CASE WHEN p_new = 'read' THEN at ELSE read_at END,
                        failed_at = CASE WHEN p_new = 'failed' THEN at ELSE failed_at END,
                        error_code = COALESCE(p_code, error_code),
                        error_title = COALESCE(p_title, error_title)
    WHERE id = p_message;
    IF m.broadcast_id IS NOT NULL THEN
        UPDATE broadcast_recipients SET status = p_new, error_code = COALESCE(p_code, error_code)
        WHERE message_id = p_message;
        IF p_new = 'failed' THEN  -- the recipient's tokens, once: only the UPDATE that marks it returns them
            UPDATE broadcast_recipients SET refunded_at = now()
            WHERE message_id = p_message AND refunded_at IS NULL AND tokens > 0
            RETURNING tokens INTO refund;
            refund := COALESCE(refund, 0);
        END IF;
        UPDATE broadcasts SET
            sent_count = sent_count + (p_new <> 'failed' AND old_rank < 2 AND new_rank >= 2)::int,
            delivered_count = delivered_count + (p_new <> 'failed' AND old_rank < 3 AND new_rank >= 3)::int,
            read_count = read_count + (p_new <> 'failed' AND old_rank < 4 AND new_rank >= 4)::int,
            failed_count = failed_count + (p_new = 'failed')::int,
            tokens_refunded = tokens_refunded + refund
        WHERE id = m.broadcast_id;
        IF refund > 0 THEN
            WITH w AS (
                UPDATE wallets SET balance = balance + refund,
                                   lifetime_consumed = GREATEST(COALESCE(lifetime_consumed, 0) - refund, 0),
                                   low_balance_signalled_at = NULL
                WHERE organization_id = m.organization_id RETURNING id, balance)
            INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                            module, action, reference_id, metadata)
            SELECT w.id, m.organization_id, 'refund', refund, w.balance - refund, w.balance, 'broadcasts',
                   'broadcast_refund', p_message,
                   jsonb_build_object('broadcast_id', m.broadcast_id, 'error_code', p_code)
            FROM w;
        END IF;
    END IF;
    RETURN true;
END
$$;
