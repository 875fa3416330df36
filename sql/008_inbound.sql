-- warp-sync: no-transaction
-- The webhook processor (issue 6): when a failed event may be tried again, and the index that finds
-- the ones that are due. hubspot_webhook_events grows with traffic, so the index is built
-- CONCURRENTLY (outside a transaction, hence the marker above; each statement is safe to re-run).
--
-- A failed event with next_attempt_at set waits for that time; a failed event without one has used up
-- its attempts and stays failed for a person to read until retention removes it.

ALTER TABLE hubspot_webhook_events ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz;

CREATE INDEX CONCURRENTLY IF NOT EXISTS hubspot_webhook_events_retry_idx
    ON hubspot_webhook_events (next_attempt_at)
    WHERE status = 'failed' AND next_attempt_at IS NOT NULL;
