-- The HubSpot request budget shared by every process that calls HubSpot (receiver workers and
-- Dagster runs alike): HubSpot counts requests per app in a rolling window, not per process.
--
-- A sliding-window log: one row per request token granted, per bucket ('burst': the 10-second
-- budget; 'search': search's own per-second limit). Takers serialise on their bucket's row in
-- hubspot_rate_budget_buckets for one short statement, on an autocommit connection of their own.

CREATE TABLE hubspot_rate_budget_buckets (
    bucket text PRIMARY KEY
);

INSERT INTO hubspot_rate_budget_buckets (bucket) VALUES ('burst'), ('search');

CREATE TABLE hubspot_rate_budget (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket    text NOT NULL REFERENCES hubspot_rate_budget_buckets (bucket),
    taken_at  timestamptz NOT NULL,
    -- Who took it: 'sync' (a create waiting on the answer) or 'bulk' (pulls, drains); for reading.
    priority  text NOT NULL,
    CONSTRAINT hubspot_rate_budget_priority_valid CHECK (priority IN ('sync', 'bulk'))
);

CREATE INDEX hubspot_rate_budget_bucket_taken_at_idx ON hubspot_rate_budget (bucket, taken_at);

-- Take one token if fewer than p_capacity were taken in the last p_window_ms milliseconds.
-- Returns 0 when taken, else how many seconds until one frees up for this capacity. A bulk
-- caller passes a smaller capacity than a sync caller: the difference is the reserved share,
-- which bulk callers can never use.
CREATE FUNCTION hubspot_rate_budget_take(
    p_bucket text, p_capacity integer, p_window_ms integer, p_priority text
) RETURNS double precision
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now    timestamptz;
    v_window interval := make_interval(secs => p_window_ms / 1000.0);
    v_used   integer;
    v_frees  timestamptz;
BEGIN
    IF p_capacity < 1 OR p_window_ms < 1 THEN
        RAISE EXCEPTION 'capacity and window must be positive (got %, %)', p_capacity, p_window_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM hubspot_rate_budget_buckets WHERE bucket = p_bucket FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO hubspot_rate_budget_buckets (bucket) VALUES (p_bucket) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM hubspot_rate_budget_buckets WHERE bucket = p_bucket FOR UPDATE;
    END IF;
    -- Read the clock after the lock: the previous holder's token is committed and visible now.
    v_now := clock_timestamp();
    DELETE FROM hubspot_rate_budget WHERE bucket = p_bucket AND taken_at <= v_now - v_window;
    SELECT count(*) INTO v_used FROM hubspot_rate_budget WHERE bucket = p_bucket;
    IF v_used < p_capacity THEN
        INSERT INTO hubspot_rate_budget (bucket, taken_at, priority) VALUES (p_bucket, v_now, p_priority);
        RETURN 0;
    END IF;
    -- Enough tokens must leave the window to bring the count below this caller's capacity.
    SELECT taken_at INTO v_frees FROM hubspot_rate_budget WHERE bucket = p_bucket
        ORDER BY taken_at OFFSET (v_used - p_capacity) LIMIT 1;
    RETURN greatest(extract(epoch FROM (v_frees + v_window - v_now))::double precision, 0.001);
END;
$$;
