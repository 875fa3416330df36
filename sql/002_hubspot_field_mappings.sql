-- The field rules (DESIGN.md, "Field rules"): which WARP column maps to which HubSpot property,
-- which way it flows, and who wins a conflict. The data team edits rows here without a release.

CREATE TABLE hubspot_field_mappings (
    warp_field       text PRIMARY KEY,
    hubspot_property text NOT NULL,
    direction        text NOT NULL,
    strategy         text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hubspot_field_mappings_property_key UNIQUE (hubspot_property),
    CONSTRAINT hubspot_field_mappings_direction_valid
        CHECK (direction IN ('WARP_TO_HUBSPOT', 'HUBSPOT_TO_WARP', 'BIDIRECTIONAL')),
    CONSTRAINT hubspot_field_mappings_strategy_valid
        CHECK (strategy IN ('HUBSPOT_WINS', 'WARP_WINS', 'LATEST_WINS', 'MANUAL')),
    -- A one-way field's owner always wins, so its strategy must name that owner.
    CONSTRAINT hubspot_field_mappings_one_way_owner CHECK (
        direction = 'BIDIRECTIONAL'
        OR (direction = 'WARP_TO_HUBSPOT' AND strategy = 'WARP_WINS')
        OR (direction = 'HUBSPOT_TO_WARP' AND strategy = 'HUBSPOT_WINS')
    ),
    -- ban identifies the customer in HubSpot; it can only ever flow from WARP.
    CONSTRAINT hubspot_field_mappings_ban_from_warp
        CHECK (warp_field <> 'ban' OR (hubspot_property = 'warp_ban' AND direction = 'WARP_TO_HUBSPOT'))
);

INSERT INTO hubspot_field_mappings (warp_field, hubspot_property, direction, strategy) VALUES
    ('ban',             'warp_ban',             'WARP_TO_HUBSPOT', 'WARP_WINS'),
    ('company_name',    'name',                 'BIDIRECTIONAL',   'LATEST_WINS'),
    ('status',          'warp_status',          'WARP_TO_HUBSPOT', 'WARP_WINS'),
    ('credit_limit',    'warp_credit_limit',    'BIDIRECTIONAL',   'HUBSPOT_WINS'),
    ('current_balance', 'warp_current_balance', 'WARP_TO_HUBSPOT', 'WARP_WINS'),
    ('services',        'warp_services',        'WARP_TO_HUBSPOT', 'WARP_WINS'),
    ('payment_terms',   'warp_payment_terms',   'HUBSPOT_TO_WARP', 'HUBSPOT_WINS'),
    ('contact_email',   'warp_contact_email',   'BIDIRECTIONAL',   'LATEST_WINS');
