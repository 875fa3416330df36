-- One row per nightly reconciliation run, keyed by the Dagster run id (DESIGN.md flow 4).
-- The row is upserted when the run starts and finished by the report; a run that fails, is
-- cancelled or dies is marked 'failed' by the run-status sensors. A finished status is final.

CREATE TABLE hubspot_reconciliation_runs (
    run_id          text PRIMARY KEY,
    -- The reconciliation request that asked for this run, if any. Text and no foreign key: the
    -- requests table arrives later, and its key is matched by its text form (a run tag).
    request_id      text,
    status          text NOT NULL DEFAULT 'running',
    dry_run         boolean NOT NULL DEFAULT false,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    counts          jsonb NOT NULL DEFAULT '{}',
    -- The report as a dict (the shape core/email.py renders) and as Markdown (escaped).
    report          jsonb,
    report_markdown text,
    failure_reason  text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hubspot_reconciliation_runs_status_valid
        CHECK (status IN ('running', 'succeeded', 'failed')),
    CONSTRAINT hubspot_reconciliation_runs_finished_when_done
        CHECK ((status = 'running') = (finished_at IS NULL)),
    CONSTRAINT hubspot_reconciliation_runs_counts_object CHECK (jsonb_typeof(counts) = 'object'),
    CONSTRAINT hubspot_reconciliation_runs_report_object
        CHECK (report IS NULL OR jsonb_typeof(report) = 'object'),
    CONSTRAINT hubspot_reconciliation_runs_run_id_present CHECK (btrim(run_id) <> '')
);

-- "What became of request N?" (a re-executed run carries the same request id, so not unique).
CREATE INDEX hubspot_reconciliation_runs_request_idx
    ON hubspot_reconciliation_runs (request_id, started_at DESC)
    WHERE request_id IS NOT NULL;

CREATE INDEX hubspot_reconciliation_runs_started_at_idx ON hubspot_reconciliation_runs (started_at DESC);

-- A finished run stays finished: its status never changes again, whoever writes the row.
CREATE FUNCTION hubspot_reconciliation_runs_keep_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'running' AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'reconciliation run % is already %', OLD.run_id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER hubspot_reconciliation_runs_keep_finished
    BEFORE UPDATE ON hubspot_reconciliation_runs
    FOR EACH ROW EXECUTE FUNCTION hubspot_reconciliation_runs_keep_finished();
