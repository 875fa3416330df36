-- What a keyed create attempt had done when its process died or its answer was lost (issue 12, item 5).
-- The attempt writes the BAN it drew, and when it began, before it calls HubSpot; a retry with the same key
-- that takes the key over (the attempt failed, or its lock ran out) tries that BAN first and adopts the
-- company HubSpot made for it (one created at or after attempt_started_at), or archives it if the retry
-- fails: one company per key, never two.
ALTER TABLE customer_create_idempotency_keys
    ADD COLUMN attempt_ban        text,
    ADD COLUMN attempt_started_at timestamptz;
