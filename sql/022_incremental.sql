-- The incremental nightly (issue 18, item 3): how far each side has been reconciled, and the records a run could
-- not settle, carried into the next one explicitly.

-- One row: the upper bounds of the last succeeded, non-dry, unbraked run's windows. hubspot_through is on HubSpot's
-- clock (the newest hs_lastmodifieddate that run's search window reached, minus the index lag); warp_through on
-- WARP's (the run's pull start, minus the margin for long write transactions). No row: the next run is a full
-- sweep (publishing rules or mapping a field deletes it).
CREATE TABLE hubspot_reconcile_watermark (
    only_row        boolean PRIMARY KEY DEFAULT true,
    hubspot_through timestamptz NOT NULL,
    warp_through    timestamptz NOT NULL,
    run_id          text NOT NULL,
    mode            text NOT NULL,
    advanced_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hubspot_reconcile_watermark_one_row CHECK (only_row),
    CONSTRAINT hubspot_reconcile_watermark_mode_valid CHECK (mode IN ('full', 'incremental'))
);

-- Records a run skipped (changed after its pull) or failed to write: the next incremental run reads them whatever
-- its windows say, and a run that settles one removes it.
CREATE TABLE hubspot_reconcile_carried (
    customer_id uuid,
    company_id  text,
    reason      text NOT NULL,
    run_id      text NOT NULL,
    carried_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hubspot_reconcile_carried_something CHECK (customer_id IS NOT NULL OR company_id IS NOT NULL)
);
CREATE UNIQUE INDEX hubspot_reconcile_carried_record ON hubspot_reconcile_carried
    (coalesce(customer_id::text, ''), coalesce(company_id, ''));

-- Every run says what kind it was (the report, the trend and the alerts tell them apart).
ALTER TABLE hubspot_reconciliation_runs ADD COLUMN mode text NOT NULL DEFAULT 'full'
    CONSTRAINT hubspot_reconciliation_runs_mode_valid CHECK (mode IN ('full', 'incremental'));

-- A change of the rules (published, or a row inserted by hand) makes the next run a full sweep: what was in step
-- under the old rules may not be under the new.
CREATE FUNCTION hubspot_field_mappings_forget_watermark() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hubspot_reconcile_watermark;
    RETURN NULL;
END;
$$;

CREATE TRIGGER hubspot_field_mappings_forget_watermark
    AFTER INSERT OR UPDATE OR DELETE ON hubspot_field_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION hubspot_field_mappings_forget_watermark();
