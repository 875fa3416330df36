-- Outbound sync (issue 5; DESIGN.md flows 1 and 2): the outbox `hubspot_sync_queue`, the UPDATE trigger that
-- fills it, and the idempotency keys of customer creates.
--
-- The outbox is transactional: a change to a mapped column of `customers` and its queue row commit together
-- or not at all, whoever the writer is (the API, billing's plain SQL, a console). At most one PENDING row per
-- customer: a later change, a failed send coming back for a retry, or a drift revert queued by the webhook
-- processor merges its fields into that row (`hubspot_sync_enqueue`, the one merge used by all of them).
--
-- Row lifecycle: pending -> claimed (a drain holds it: lease token + expiry, committed in a short transaction,
-- no row lock across HTTP) -> done; or back to pending (merged) after a failure with backoff; or dead after
-- the last attempt (with the last error); or parked when the customer's company link is not 'linked'.
-- A claim whose lease expired (a drain that died) is merged back into pending by the next drain.

CREATE TABLE hubspot_sync_queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id      uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    -- WARP field names whose current values are to be sent (sorted, distinct).
    fields           text[] NOT NULL,
    -- Why the row exists: 'warp_change' (the trigger), 'retry', 'drift_revert', 'lease_expired', ... (distinct).
    reasons          text[] NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'pending',
    -- Failed sends so far; the drain marks the row dead when this reaches its maximum (3 by default).
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,
    lease_expires_at timestamptz,
    -- A stable code, then text for people (dead and parked rows always say why).
    last_error_code  text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT hubspot_sync_queue_status_valid
        CHECK (status IN ('pending', 'claimed', 'done', 'dead', 'parked')),
    CONSTRAINT hubspot_sync_queue_fields_present CHECK (cardinality(fields) > 0),
    CONSTRAINT hubspot_sync_queue_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT hubspot_sync_queue_lease_pair CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT hubspot_sync_queue_claimed_has_lease CHECK ((status = 'claimed') = (lease_token IS NOT NULL)),
    CONSTRAINT hubspot_sync_queue_reason_when_stopped
        CHECK (status NOT IN ('dead', 'parked') OR (last_error_code IS NOT NULL AND last_error IS NOT NULL))
);

-- One pending row per customer: the merge target of every enqueue.
CREATE UNIQUE INDEX hubspot_sync_queue_one_pending_key ON hubspot_sync_queue (customer_id) WHERE status = 'pending';
-- The sensor's "anything due?" and the drain's claim, oldest first.
CREATE INDEX hubspot_sync_queue_due_idx ON hubspot_sync_queue (next_attempt_at, id) WHERE status = 'pending';
-- Claims whose drain died are found by their expiry.
CREATE INDEX hubspot_sync_queue_claimed_idx ON hubspot_sync_queue (lease_expires_at) WHERE status = 'claimed';
-- Finished rows are purged by age; dead and parked rows are listed for people.
CREATE INDEX hubspot_sync_queue_finished_idx ON hubspot_sync_queue (finished_at) WHERE status = 'done';
CREATE INDEX hubspot_sync_queue_stopped_idx ON hubspot_sync_queue (status, updated_at)
    WHERE status IN ('dead', 'parked');
-- Deleting a customer cascades here.
CREATE INDEX hubspot_sync_queue_customer_idx ON hubspot_sync_queue (customer_id);

-- Queue (or merge into the pending row) fields of one customer. Used by the trigger below, by the drain when a
-- failed or unclaimed row goes back, and by the webhook processor (core.outbound.enqueue_fields) to revert
-- drift. A merge keeps the larger attempt count and the later next attempt (a backoff is not cut short by a
-- new change), and the newer error. Returns the pending row's id (NULL when no field was given).
CREATE FUNCTION hubspot_sync_enqueue(
    p_customer_id uuid,
    p_fields text[],
    p_reason text,
    p_attempts integer DEFAULT 0,
    p_not_before timestamptz DEFAULT NULL,
    p_last_error_code text DEFAULT NULL,
    p_last_error text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_fields text[];
    v_id bigint;
BEGIN
    SELECT coalesce(array_agg(DISTINCT f ORDER BY f), '{}') INTO v_fields
    FROM unnest(p_fields) AS f WHERE f IS NOT NULL AND f <> '';
    IF cardinality(v_fields) = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO hubspot_sync_queue AS q (customer_id, fields, reasons, attempts, next_attempt_at,
                                         last_error_code, last_error)
    VALUES (p_customer_id, v_fields, ARRAY[coalesce(p_reason, 'unspecified')], coalesce(p_attempts, 0),
            coalesce(p_not_before, now()), p_last_error_code, p_last_error)
    ON CONFLICT (customer_id) WHERE status = 'pending' DO UPDATE SET
        fields = ARRAY(SELECT DISTINCT f FROM unnest(q.fields || EXCLUDED.fields) AS f ORDER BY f),
        reasons = ARRAY(SELECT DISTINCT r FROM unnest(q.reasons || EXCLUDED.reasons) AS r ORDER BY r),
        attempts = greatest(q.attempts, EXCLUDED.attempts),
        next_attempt_at = greatest(q.next_attempt_at, EXCLUDED.next_attempt_at),
        last_error_code = coalesce(EXCLUDED.last_error_code, q.last_error_code),
        last_error = coalesce(EXCLUDED.last_error, q.last_error),
        updated_at = now()
    RETURNING q.id INTO v_id;
    RETURN v_id;
END;
$$;

-- A WARP column value (as to_jsonb(customers row) -> field gives it) in the comparable text of
-- warp_sync_pipeline/core/normalize.py ('' = empty): what hubspot_field_state stores. WARP's CHECK constraints
-- already hold each column to its value set, so only the canonical spelling is computed here. Email case
-- folding uses the database's lower(); outside ASCII that depends on its LC_CTYPE, and the drain records
-- Python's form when it sends, so the two can differ only until then.
CREATE FUNCTION hubspot_sync_comparable(p_field text, p_value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_text text;
BEGIN
    IF p_value IS NULL OR jsonb_typeof(p_value) = 'null' THEN
        RETURN '';
    END IF;
    IF p_field = 'services' THEN
        -- The enabled ones in the canonical order, ';'-joined.
        RETURN concat_ws(';',
            CASE WHEN p_value -> 'voice' = 'true'::jsonb THEN 'voice' END,
            CASE WHEN p_value -> 'messaging' = 'true'::jsonb THEN 'messaging' END,
            CASE WHEN p_value -> 'data' = 'true'::jsonb THEN 'data' END);
    END IF;
    v_text := p_value #>> '{}';
    IF p_field IN ('credit_limit', 'current_balance') THEN
        RETURN round(v_text::numeric, 2)::text;
    END IF;
    IF p_field = 'contact_email' THEN
        RETURN lower(btrim(v_text));
    END IF;
    IF p_field = 'company_name' THEN
        -- Python's form: control characters removed, then str.strip()'s whitespace on both ends.
        v_text := regexp_replace(v_text, '[\u0001-\u001f\u007f-\u009f]', '', 'g');
        RETURN regexp_replace(v_text,
            '^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$',
            '', 'g');
    END IF;
    RETURN btrim(v_text);
END;
$$;

-- The outbox trigger. After an UPDATE of a customer that changed mapped columns (hubspot_field_mappings; never
-- id, created_at, updated_at, external_ids or hubspot_link_status): record WARP's change time and value per
-- field in hubspot_field_state, and queue the fields that flow to HubSpot. A transaction that applies
-- HubSpot's values carries SET LOCAL warp_sync.origin = 'hubspot' and is skipped whole (no echo back).
-- INSERT never fires it: a create syncs itself.
CREATE FUNCTION customers_queue_hubspot_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_old jsonb;
    v_new jsonb;
    v_rule record;
    v_changed text[] := '{}';
    v_queued text[] := '{}';
    v_at timestamptz := clock_timestamp();
BEGIN
    IF current_setting('warp_sync.origin', true) = 'hubspot' THEN
        RETURN NULL;
    END IF;
    v_old := to_jsonb(OLD);
    v_new := to_jsonb(NEW);
    FOR v_rule IN SELECT warp_field, direction FROM hubspot_field_mappings LOOP
        CONTINUE WHEN v_rule.warp_field IN ('id', 'created_at', 'updated_at', 'external_ids', 'hubspot_link_status');
        CONTINUE WHEN NOT (v_new ? v_rule.warp_field);
        IF (v_old -> v_rule.warp_field) IS DISTINCT FROM (v_new -> v_rule.warp_field) THEN
            v_changed := v_changed || v_rule.warp_field;
            IF v_rule.direction <> 'HUBSPOT_TO_WARP' THEN
                v_queued := v_queued || v_rule.warp_field;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(v_changed) = 0 THEN
        RETURN NULL;
    END IF;
    -- Never move WARP's part backwards in time (as core.field_state.upsert_field_state does).
    INSERT INTO hubspot_field_state AS s (customer_id, warp_field, warp_value, warp_changed_at)
    SELECT NEW.id, f, hubspot_sync_comparable(f, v_new -> f), v_at FROM unnest(v_changed) AS f
    ON CONFLICT (customer_id, warp_field) DO UPDATE SET
        warp_value = CASE WHEN s.warp_changed_at IS NULL OR EXCLUDED.warp_changed_at >= s.warp_changed_at
                          THEN EXCLUDED.warp_value ELSE s.warp_value END,
        warp_changed_at = greatest(s.warp_changed_at, EXCLUDED.warp_changed_at),
        updated_at = now();
    IF cardinality(v_queued) > 0 THEN
        PERFORM hubspot_sync_enqueue(NEW.id, v_queued, 'warp_change');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER customers_queue_hubspot_sync
    AFTER UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_queue_hubspot_sync();

-- Idempotency keys of POST /v1/customers (per credential name). The key and a hash of the body are committed
-- before the create starts: a concurrent duplicate finds 'in_progress' (409), the same key with another body is
-- refused (422), and a retry after success gets the stored first answer. The create marks its key 'succeeded'
-- in its own transaction, so the answer is stored exactly when the customer is. A 'failed' key, or an
-- 'in_progress' one whose lock ran out (its process died), may be taken again. Purged by age.
CREATE TABLE customer_create_idempotency_keys (
    principal       text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    text NOT NULL,
    status          text NOT NULL DEFAULT 'in_progress',
    attempt_token   uuid NOT NULL,
    locked_until    timestamptz NOT NULL,
    customer_id     uuid,
    response_status integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, idempotency_key),
    CONSTRAINT customer_create_idempotency_keys_status_valid
        CHECK (status IN ('in_progress', 'succeeded', 'failed')),
    CONSTRAINT customer_create_idempotency_keys_key_length
        CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT customer_create_idempotency_keys_success_has_answer
        CHECK (status <> 'succeeded' OR (response IS NOT NULL AND response_status IS NOT NULL
                                         AND customer_id IS NOT NULL))
);

CREATE INDEX customer_create_idempotency_keys_created_at_idx ON customer_create_idempotency_keys (created_at);
