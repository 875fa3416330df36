-- Reconciliation runs asked for on demand (POST /v1/sync/reconcile). A sensor turns each row into
-- a run of reconciliation_job (run_key reconcile-request-<id>, the id as a run tag); what became of
-- it is read from hubspot_reconciliation_runs, whose request_id names this row.

CREATE TABLE hubspot_reconcile_requests (
    id               bigserial PRIMARY KEY,
    requested_by     text NOT NULL,
    dry_run          boolean NOT NULL DEFAULT false,
    allow_mass_write boolean NOT NULL DEFAULT false,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    -- Set by the sensor when it has asked Dagster for the run.
    submitted_at     timestamptz,
    CONSTRAINT hubspot_reconcile_requests_requested_by_present CHECK (btrim(requested_by) <> '')
);
