-- payment.refund_due (issue 17: "payment confirmed or refund due"): an M-Pesa payment confirmed paid that the
-- engine cannot honour becomes settlement = 'refund_due' (handlers/ticket_effects.py: paid after the hold lapsed
-- and no seats remain, or for an event that closed or was cancelled meanwhile). The event is recorded by a
-- trigger in that same transaction, through sql/036's outbox (webhook_wanted, webhook_emit), like the others.
-- refund_reason says why: sold_out, event_cancelled or closed.

ALTER TABLE payment_requests ADD COLUMN refund_reason VARCHAR(40);

CREATE FUNCTION webhook_refund_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.settlement = 'refund_due' AND OLD.settlement IS DISTINCT FROM 'refund_due'
       AND webhook_wanted(NEW.organization_id, 'payment.refund_due') THEN
        PERFORM webhook_emit(NEW.organization_id, 'payment.refund_due', jsonb_build_object(
            'payment_id', NEW.id, 'amount', NEW.amount, 'receipt', NEW.receipt, 'phone', NEW.phone,
            'checkout_request_id', NEW.checkout_request_id, 'account_reference', NEW.account_reference,
            'hold_id', NEW.hold_id, 'reason', NEW.refund_reason,
            'event_id', (SELECT tt.event_id FROM ticket_holds h JOIN ticket_types tt ON tt.id = h.ticket_type_id
                         WHERE h.id = NEW.hold_id),
            'contact', webhook_contact(NEW.contact_id), 'due_since', NEW.settled_at));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_webhook_refund_due AFTER UPDATE OF settlement ON payment_requests
    FOR EACH ROW EXECUTE FUNCTION webhook_refund_due();
