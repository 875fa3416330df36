-- Sync state (issue 4): per-field state, the audit trail, the write ledger, the review queue, customer
-- leases, and the audit of mapping-table changes. Values are stored in their comparable (normalised) text,
-- '' meaning empty (warp_sync_pipeline/core/normalize.py).

-- Per customer and field: the value both sides last agreed on, and each side's last known value.
CREATE TABLE hubspot_field_state (
    customer_id        uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    warp_field         text NOT NULL,
    agreed_value       text,
    agreed_at          timestamptz,
    warp_value         text,
    warp_changed_at    timestamptz,
    hubspot_value      text,
    hubspot_changed_at timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, warp_field),
    -- No agreed value is NULL/NULL; an agreement always has its time ('' is an agreed empty value).
    CONSTRAINT hubspot_field_state_agreed_has_time CHECK ((agreed_value IS NULL) = (agreed_at IS NULL))
);

-- The audit trail: one row per field decision or write. No foreign key to customers: it also records
-- creates that rolled back, by BAN.
CREATE TABLE hubspot_sync_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    customer_id      uuid,
    ban              text,
    warp_field       text,
    hubspot_property text,
    direction        text,
    trigger          text NOT NULL,
    old_value        text,
    new_value        text,
    action           text,
    reason           text,
    outcome          text NOT NULL,
    error_code       text,
    error            text,
    actor            text,
    dagster_run_id   text,
    details          jsonb,
    CONSTRAINT hubspot_sync_log_direction_valid
        CHECK (direction IS NULL OR direction IN ('WARP_TO_HUBSPOT', 'HUBSPOT_TO_WARP')),
    CONSTRAINT hubspot_sync_log_trigger_valid CHECK (
        trigger IN ('create', 'queue', 'webhook', 'reconciliation', 'manual', 'resolution', 'mapping')
    ),
    CONSTRAINT hubspot_sync_log_outcome_valid CHECK (
        outcome IN ('applied', 'in_sync', 'conflict', 'skipped', 'failed', 'rolled_back', 'dry_run')
    )
);

CREATE INDEX hubspot_sync_log_customer_idx ON hubspot_sync_log (customer_id, logged_at);
CREATE INDEX hubspot_sync_log_ban_idx ON hubspot_sync_log (ban, logged_at);
-- Serves retention (delete by age) and "latest activity" pages.
CREATE INDEX hubspot_sync_log_logged_at_idx ON hubspot_sync_log (logged_at);

-- Outbound writes awaiting their echo (DESIGN.md, "Loops and echoes"). A create's entries are keyed by BAN
-- until HubSpot answers with the company id.
CREATE TABLE hubspot_write_ledger (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       text,
    ban              text,
    warp_field       text NOT NULL,
    hubspot_property text NOT NULL,
    value            text NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at       timestamptz NOT NULL,
    matched_at       timestamptz,
    voided_at        timestamptz,
    void_reason      text,
    CONSTRAINT hubspot_write_ledger_keyed CHECK (company_id IS NOT NULL OR ban IS NOT NULL),
    CONSTRAINT hubspot_write_ledger_status_valid CHECK (status IN ('pending', 'matched', 'voided'))
);

CREATE INDEX hubspot_write_ledger_pending_idx
    ON hubspot_write_ledger (company_id, hubspot_property, written_at)
    WHERE status = 'pending';
CREATE INDEX hubspot_write_ledger_unbound_idx ON hubspot_write_ledger (ban) WHERE company_id IS NULL;
CREATE INDEX hubspot_write_ledger_expires_idx ON hubspot_write_ledger (expires_at);

-- The MANUAL review queue. `version` moves whenever the values under review change, so a reviewer's
-- resolution can be compare-and-set against what the reviewer saw.
CREATE TABLE hubspot_conflicts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id        uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    warp_field         text NOT NULL,
    hubspot_property   text NOT NULL,
    status             text NOT NULL DEFAULT 'open',
    reason             text NOT NULL,
    agreed_value       text,
    warp_value         text,
    warp_changed_at    timestamptz,
    hubspot_value      text,
    hubspot_changed_at timestamptz,
    detected_by        text NOT NULL,
    detection_count    integer NOT NULL DEFAULT 1,
    dagster_run_id     text,
    version            integer NOT NULL DEFAULT 1,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    closed_by          text,
    resolution         text,
    resolved_value     text,
    CONSTRAINT hubspot_conflicts_status_valid CHECK (status IN ('open', 'resolved', 'superseded')),
    CONSTRAINT hubspot_conflicts_closed_consistent CHECK ((status = 'open') = (closed_at IS NULL))
);

-- At most one open conflict per customer and field; a later detection updates it.
CREATE UNIQUE INDEX hubspot_conflicts_one_open_key
    ON hubspot_conflicts (customer_id, warp_field)
    WHERE status = 'open';
CREATE INDEX hubspot_conflicts_open_idx ON hubspot_conflicts (opened_at) WHERE status = 'open';

-- One interactive writer per customer at a time (DESIGN.md, flow 2). No foreign key: a lease is a claim on
-- an id, taken and dropped in short autocommit transactions.
CREATE TABLE hubspot_customer_leases (
    customer_id uuid PRIMARY KEY,
    holder      text NOT NULL,
    token       uuid NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX hubspot_customer_leases_expires_idx ON hubspot_customer_leases (expires_at);

-- Changes to the rules change what every flow does, so they are audited like any sync decision. The
-- writer can name itself with SET LOCAL warp_sync.actor (and warp_sync.run_id); else the database role.
CREATE FUNCTION hubspot_field_mappings_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_rule jsonb;
    new_rule jsonb;
    row_field text;
    row_property text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_rule := jsonb_build_object('hubspot_property', OLD.hubspot_property,
                                       'direction', OLD.direction, 'strategy', OLD.strategy);
        row_field := OLD.warp_field;
        row_property := OLD.hubspot_property;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_rule := jsonb_build_object('hubspot_property', NEW.hubspot_property,
                                       'direction', NEW.direction, 'strategy', NEW.strategy);
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

CREATE TRIGGER hubspot_field_mappings_audit
    AFTER INSERT OR UPDATE OR DELETE ON hubspot_field_mappings
    FOR EACH ROW EXECUTE FUNCTION hubspot_field_mappings_audit();
