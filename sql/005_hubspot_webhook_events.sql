-- Inbound HubSpot webhook events (DESIGN.md flow 3): every event of every trusted batch, stored once.
--
-- The receiver inserts a whole batch with one INSERT ... ON CONFLICT (dedupe_key) DO NOTHING; the key
-- is a SHA-256 of the event's own fields without attemptNumber, because eventId alone is not unique
-- and creation/deletion/merge events carry no property. Events of a type we do not handle, or that
-- fail their type's checks, arrive as 'ignored' with the reason, so one odd event never makes
-- HubSpot retry the whole batch.
--
-- The processor claims pending events per company (lease_token + lease_expires_at, committed in a
-- short transaction, as the outbound drain does), applies them in occurred_at order and finishes
-- each row as processed, ignored or failed with its reason, result or error. Finished rows are purged
-- by received_at after the retention period (at least three days: the dedupe window must outlast
-- HubSpot's day of retries).

CREATE TABLE hubspot_webhook_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key        bytea NOT NULL,
    status            text NOT NULL DEFAULT 'pending',
    -- Why an event was ignored or failed: a stable code, a colon, then detail for people.
    reason            text,
    -- What applying the event did (the processor's summary), and the last error of a failed attempt.
    result            jsonb,
    error             text,
    attempts          integer NOT NULL DEFAULT 0,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    -- The event's fields, typed; NULL where an ignored event lacked the field or it was malformed.
    subscription_type text,
    object_id         text,           -- the HubSpot company id, as the CRM API writes ids
    occurred_at       timestamptz,    -- occurredAt (epoch ms in the payload; kept to the millisecond)
    event_id          bigint,
    subscription_id   bigint,
    portal_id         bigint,
    app_id            bigint,
    attempt_number    integer,        -- attemptNumber of the delivery that was stored
    property_name     text,
    property_value    text,
    change_source     text,
    source_id         text,
    change_flag       text,
    primary_object_id text,           -- company.merge: the surviving company ...
    merged_object_ids text[],         -- ... the companies merged into it ...
    new_object_id     text,           -- ... and the id HubSpot gave the result, when it sends one
    payload           jsonb NOT NULL, -- the event exactly as parsed from the request body
    received_at       timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    CONSTRAINT hubspot_webhook_events_dedupe_key_key UNIQUE (dedupe_key),
    CONSTRAINT hubspot_webhook_events_dedupe_key_sha256 CHECK (octet_length(dedupe_key) = 32),
    CONSTRAINT hubspot_webhook_events_status_valid
        CHECK (status IN ('pending', 'processed', 'ignored', 'failed')),
    CONSTRAINT hubspot_webhook_events_reason_when_not_applied
        CHECK (status NOT IN ('ignored', 'failed') OR reason IS NOT NULL),
    -- A pending event passed its type's checks, so the processor can rely on these.
    CONSTRAINT hubspot_webhook_events_pending_is_complete CHECK (
        status <> 'pending'
        OR (subscription_type IS NOT NULL AND object_id IS NOT NULL AND occurred_at IS NOT NULL)
    ),
    CONSTRAINT hubspot_webhook_events_lease_pair
        CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT hubspot_webhook_events_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT hubspot_webhook_events_object_id_digits CHECK (object_id ~ '^[0-9]+$')
);

-- The sensor's "anything pending?" and the processor's per-company claim in occurredAt order.
CREATE INDEX hubspot_webhook_events_pending_idx
    ON hubspot_webhook_events (object_id, occurred_at, id)
    WHERE status = 'pending';

-- Retention purges by age; rows arrive in received_at order, so a BRIN index is tiny and enough.
CREATE INDEX hubspot_webhook_events_received_at_brin
    ON hubspot_webhook_events USING brin (received_at);
