-- Pauses of every flow that calls HubSpot (issue 12, item 6): one row per open cause, shared by every process.
-- A flow that meets a failure of HubSpot as a whole (not of one record) opens its cause's row and ends without
-- spending attempts; the sensors and the nightly schedule skip while a pause is open, naming it and the next
-- probe; when next_probe_at comes, one process (the claim below is a compare-and-set on next_probe_at) asks
-- HubSpot one cheap question, and a good answer deletes every row: the flows resume by themselves.
CREATE TABLE hubspot_pauses (
    cause         text PRIMARY KEY,
    reason        text NOT NULL,            -- what was seen, for people (no customer data)
    opened_by     text NOT NULL,            -- the flow that saw it first
    opened_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_probe_at timestamptz NOT NULL,
    probes        integer NOT NULL DEFAULT 0,  -- failed probes since it opened (the wait doubles with each)
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT hubspot_pauses_cause_valid CHECK (cause IN ('hubspot_outage', 'token_refused', 'daily_quota'))
);
