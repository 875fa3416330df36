-- Types as code, fields as data (issue 18, item 2): each mapping row declares its field's type and options, so a
-- row mapping a new `customers` column of a type warp-sync knows works with no release. The forms of each type
-- live in core/normalize.py; the outbox trigger's SQL form follows the row's type (hubspot_sync_comparable_typed).

ALTER TABLE hubspot_field_mappings
    ADD COLUMN field_type text,
    -- Enumerations: their values; a set of flags: its flags in their canonical order.
    ADD COLUMN options jsonb NOT NULL DEFAULT '[]',
    -- Amounts: the decimal places WARP's column keeps.
    ADD COLUMN scale integer,
    ADD COLUMN minimum numeric;

UPDATE hubspot_field_mappings SET field_type = CASE warp_field
    WHEN 'ban' THEN 'ban'
    WHEN 'company_name' THEN 'string'
    WHEN 'status' THEN 'enumeration'
    WHEN 'credit_limit' THEN 'amount'
    WHEN 'current_balance' THEN 'amount'
    WHEN 'services' THEN 'services'
    WHEN 'payment_terms' THEN 'enumeration'
    WHEN 'contact_email' THEN 'email'
    END;
UPDATE hubspot_field_mappings SET options = '["PENDING", "ACTIVE", "SUSPENDED", "CLOSED"]' WHERE warp_field = 'status';
UPDATE hubspot_field_mappings SET options = '["PREPAID", "NET15", "NET30", "NET45", "NET60"]'
    WHERE warp_field = 'payment_terms';
UPDATE hubspot_field_mappings SET options = '["voice", "messaging", "data"]' WHERE warp_field = 'services';
UPDATE hubspot_field_mappings SET scale = 2 WHERE warp_field IN ('credit_limit', 'current_balance');
UPDATE hubspot_field_mappings SET minimum = 0 WHERE warp_field = 'credit_limit';

ALTER TABLE hubspot_field_mappings
    ALTER COLUMN field_type SET NOT NULL,
    ADD CONSTRAINT hubspot_field_mappings_type_valid CHECK (field_type IN
        ('ban', 'string', 'email', 'enumeration', 'amount', 'services', 'integer', 'boolean', 'date')),
    ADD CONSTRAINT hubspot_field_mappings_options_array CHECK (jsonb_typeof(options) = 'array'),
    ADD CONSTRAINT hubspot_field_mappings_options_given
        CHECK (field_type NOT IN ('enumeration', 'services') OR jsonb_array_length(options) > 0),
    ADD CONSTRAINT hubspot_field_mappings_scale_valid
        CHECK ((field_type = 'amount') = (scale IS NOT NULL) AND (scale IS NULL OR scale BETWEEN 0 AND 6));

ALTER TABLE hubspot_rule_draft_fields
    ADD COLUMN field_type text,
    ADD COLUMN options jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN scale integer,
    ADD COLUMN minimum numeric;
UPDATE hubspot_rule_draft_fields d SET field_type = m.field_type, options = m.options, scale = m.scale,
                                       minimum = m.minimum
    FROM hubspot_field_mappings m WHERE m.warp_field = d.warp_field;
UPDATE hubspot_rule_draft_fields SET field_type = 'string' WHERE field_type IS NULL;
ALTER TABLE hubspot_rule_draft_fields
    ALTER COLUMN field_type SET NOT NULL,
    ADD CONSTRAINT hubspot_rule_draft_fields_type_valid CHECK (field_type IN
        ('ban', 'string', 'email', 'enumeration', 'amount', 'services', 'integer', 'boolean', 'date')),
    ADD CONSTRAINT hubspot_rule_draft_fields_options_array CHECK (jsonb_typeof(options) = 'array'),
    ADD CONSTRAINT hubspot_rule_draft_fields_options_given
        CHECK (field_type NOT IN ('enumeration', 'services') OR jsonb_array_length(options) > 0),
    ADD CONSTRAINT hubspot_rule_draft_fields_scale_valid
        CHECK ((field_type = 'amount') = (scale IS NOT NULL) AND (scale IS NULL OR scale BETWEEN 0 AND 6));

-- A WARP column value (as to_jsonb(customers row) -> field gives it) in the comparable text of
-- core/normalize.py for its declared type ('' = empty). WARP's CHECK constraints hold each column to its values,
-- so only the canonical spelling is computed here (tests/core/sync_state/test_sql_comparable.py ties it to Python).
CREATE FUNCTION hubspot_sync_comparable_typed(p_type text, p_options jsonb, p_scale integer, p_value jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_text text;
BEGIN
    IF p_value IS NULL OR jsonb_typeof(p_value) = 'null' THEN
        RETURN '';
    END IF;
    IF p_type = 'services' THEN
        -- The flags set, in the row's canonical order, ';'-joined.
        RETURN coalesce((SELECT string_agg(flag, ';' ORDER BY position)
                           FROM jsonb_array_elements_text(p_options) WITH ORDINALITY AS o(flag, position)
                          WHERE p_value -> flag = 'true'::jsonb), '');
    END IF;
    v_text := p_value #>> '{}';
    IF p_type = 'amount' THEN
        RETURN round(v_text::numeric, coalesce(p_scale, 2))::text;
    END IF;
    IF p_type = 'integer' THEN
        RETURN (v_text::numeric)::bigint::text;
    END IF;
    IF p_type = 'boolean' THEN
        RETURN lower(v_text);
    END IF;
    IF p_type = 'email' THEN
        RETURN lower(btrim(v_text));
    END IF;
    IF p_type = 'string' THEN
        -- Python's form: control characters removed, then str.strip()'s whitespace on both ends.
        v_text := regexp_replace(v_text, '[\u0001-\u001f\u007f-\u009f]', '', 'g');
        RETURN regexp_replace(v_text,
            '^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$',
            '', 'g');
    END IF;
    RETURN btrim(v_text);  -- ban, enumeration, date (to_jsonb gives YYYY-MM-DD)
END;
$$;

-- The outbox trigger, as in sql/007, with each field's comparable value computed for its declared type.
CREATE OR REPLACE FUNCTION customers_queue_hubspot_sync() RETURNS trigger
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
    SELECT NEW.id, m.warp_field, hubspot_sync_comparable_typed(m.field_type, m.options, m.scale, v_new -> m.warp_field),
           v_at
      FROM hubspot_field_mappings m WHERE m.warp_field = ANY(v_changed)
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

-- The mapping audit includes the type and options (a changed type changes what the field holds).
CREATE OR REPLACE FUNCTION hubspot_field_mappings_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_rule jsonb;
    new_rule jsonb;
    row_field text;
    row_property text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_rule := jsonb_build_object('hubspot_property', OLD.hubspot_property, 'direction', OLD.direction,
                                       'strategy', OLD.strategy, 'field_type', OLD.field_type,
                                       'options', OLD.options, 'scale', OLD.scale, 'minimum', OLD.minimum);
        row_field := OLD.warp_field;
        row_property := OLD.hubspot_property;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_rule := jsonb_build_object('hubspot_property', NEW.hubspot_property, 'direction', NEW.direction,
                                       'strategy', NEW.strategy, 'field_type', NEW.field_type,
                                       'options', NEW.options, 'scale', NEW.scale, 'minimum', NEW.minimum);
        row_field := NEW.warp_field;
        row_property := NEW.hubspot_property;
    END IF;
    -- Touching only the timestamps changes no rule.
    IF TG_OP = 'UPDATE' AND old_rule = new_rule AND OLD.warp_field = NEW.warp_field THEN
        RETURN NULL;
    END IF;
    INSERT INTO hubspot_sync_log (customer_id, ban, warp_field, hubspot_property, direction, trigger,
                                  old_value, new_value, action, reason, outcome, actor, dagster_run_id,
                                  details)
    VALUES (NULL, NULL, row_field, row_property, NULL, 'mapping',
            old_rule::text, new_rule::text, 'MAPPING_' || TG_OP, 'MAPPING_' || TG_OP, 'applied',
            coalesce(nullif(current_setting('warp_sync.actor', true), ''), session_user),
            nullif(current_setting('warp_sync.run_id', true), ''),
            jsonb_build_object('old_warp_field', CASE WHEN TG_OP <> 'INSERT' THEN OLD.warp_field END,
                               'new_warp_field', CASE WHEN TG_OP <> 'DELETE' THEN NEW.warp_field END));
    RETURN NULL;
END;
$$;
