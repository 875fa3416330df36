-- The HubSpot account warp-sync talks to, as GET /account-info/v3/details described it: the reports and the review
-- pages link each company to https://{ui_domain}/contacts/{portal_id}/record/0-2/{id}. Read once (by the first
-- process that needs it), kept here so the receiver's pages never call HubSpot to draw a link. One row at most.
CREATE TABLE hubspot_account (
    only_row   boolean PRIMARY KEY DEFAULT true,
    portal_id  bigint NOT NULL,
    ui_domain  text NOT NULL,
    time_zone  text,
    read_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hubspot_account_one_row CHECK (only_row),
    CONSTRAINT hubspot_account_portal_id_valid CHECK (portal_id > 0),
    CONSTRAINT hubspot_account_ui_domain_valid CHECK (ui_domain ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$')
);
