-- The account's daily HubSpot quota as warp-sync last saw it (X-HubSpot-RateLimit-Daily and -Daily-Remaining on
-- HubSpot's answers), shared by every process like the request budget: bulk callers stop while what is left is
-- within the share kept for synchronous creates (HUBSPOT_DAILY_RESERVED_SHARE). One row.
CREATE TABLE hubspot_daily_quota (
    singleton   boolean PRIMARY KEY DEFAULT true,
    daily_limit integer NOT NULL,
    remaining   integer NOT NULL,
    observed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT hubspot_daily_quota_one_row CHECK (singleton),
    CONSTRAINT hubspot_daily_quota_counts CHECK (daily_limit >= 0 AND remaining >= 0)
);
