-- Alerts (issue 16): what warp-sync has told the admins, and the facts the alert sensor reads that only Dagster knew.

-- One row per alert condition ever raised ("queue_dead_letters", "run_failed:<job>", "check_failed:<asset>.<check>"):
-- whether the last notice said it was firing, and when a notice last went out, so a condition is announced once
-- per WARP_ALERT_REPEAT_MINUTES while it lasts and once more, as resolved, when it clears.
CREATE TABLE warp_alerts (
    key          text PRIMARY KEY,
    firing       boolean NOT NULL,
    title        text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    fired_at     timestamptz,
    notified_at  timestamptz NOT NULL,
    resolved_at  timestamptz,
    CONSTRAINT warp_alerts_key_present CHECK (btrim(key) <> '')
);

-- The latest result of each asset check the nightly computes. Open-source Dagster has no alert hook for checks,
-- so the assets record their results here and the alert sensor reads them (a failed ERROR check alerts).
CREATE TABLE warp_check_results (
    asset        text NOT NULL,
    check_name   text NOT NULL,
    severity     text NOT NULL,
    passed       boolean NOT NULL,
    description  text NOT NULL DEFAULT '',
    run_id       text NOT NULL,
    -- What the check found (the duplicate BANs), so the next run can tell a new finding from a known one.
    found        jsonb NOT NULL DEFAULT '[]',
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, check_name),
    CONSTRAINT warp_check_results_severity_valid CHECK (severity IN ('ERROR', 'WARN'))
);

-- What the alert sensor reads of a finished nightly: whether the brake stopped its write-back, and whether its
-- report reached the recipients ('sent ...', 'not configured', 'failed: CODE').
ALTER TABLE hubspot_reconciliation_runs ADD COLUMN braked boolean NOT NULL DEFAULT false;
ALTER TABLE hubspot_reconciliation_runs ADD COLUMN email_outcome text;
