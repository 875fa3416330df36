-- HubSpot's 429 answers, counted per day and kind ('daily': the account's daily quota; 'interval': the ten-secondly
-- or per-second limits), by every process that calls HubSpot: the receiver's /metrics reads them at scrape time,
-- since most calls happen in Dagster runs. At most two small rows a day, kept (a year is 730 rows).
CREATE TABLE hubspot_rate_limit_hits (
    day      date NOT NULL DEFAULT current_date,
    kind     text NOT NULL,
    hits     bigint NOT NULL DEFAULT 0,
    last_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (day, kind),
    CONSTRAINT hubspot_rate_limit_hits_kind_valid CHECK (kind IN ('daily', 'interval'))
);

-- /metrics counts the webhook events given up on (failed, no attempt left) at every scrape: an index of their own,
-- so the count never reads the days of processed events around them.
CREATE INDEX hubspot_webhook_events_given_up_idx ON hubspot_webhook_events (id)
    WHERE status = 'failed' AND next_attempt_at IS NULL;
