-- How far a running reconciliation has got, per stage (the pulls' pages, the write-backs' companies), so a person
-- following the run from a shell (`warp-sync reconcile`) sees it move. Written only while the row is running.
ALTER TABLE hubspot_reconciliation_runs ADD COLUMN progress jsonb NOT NULL DEFAULT '{}';
ALTER TABLE hubspot_reconciliation_runs ADD CONSTRAINT hubspot_reconciliation_runs_progress_object
    CHECK (jsonb_typeof(progress) = 'object');
