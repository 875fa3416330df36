-- Rule drafts (issue 18): a named, complete set of field rules beside the live one (hubspot_field_mappings). A draft
-- is checked like the live rules, previewed by a dry run of the nightly under it, and published in one transaction
-- (every flow reads the rules per transaction, so they all switch together). Each publish keeps the rules it
-- replaced in hubspot_rule_versions, so a rollback is the publishing of a kept version.

CREATE TABLE hubspot_rule_drafts (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    note          text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'draft',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    published_by  text,
    published_at  timestamptz,
    CONSTRAINT hubspot_rule_drafts_name_valid CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    CONSTRAINT hubspot_rule_drafts_status_valid CHECK (status IN ('draft', 'published', 'discarded')),
    CONSTRAINT hubspot_rule_drafts_published CHECK ((status = 'published') = (published_at IS NOT NULL))
);
-- One open draft per name; a published or discarded name may be used again.
CREATE UNIQUE INDEX hubspot_rule_drafts_open_name ON hubspot_rule_drafts (name) WHERE status = 'draft';

-- A draft's rules: the same columns and the same rules between them as hubspot_field_mappings.
CREATE TABLE hubspot_rule_draft_fields (
    draft_id         bigint NOT NULL REFERENCES hubspot_rule_drafts (id) ON DELETE CASCADE,
    warp_field       text NOT NULL,
    hubspot_property text NOT NULL,
    direction        text NOT NULL,
    strategy         text NOT NULL,
    PRIMARY KEY (draft_id, warp_field),
    CONSTRAINT hubspot_rule_draft_fields_property_key UNIQUE (draft_id, hubspot_property),
    CONSTRAINT hubspot_rule_draft_fields_direction_valid
        CHECK (direction IN ('WARP_TO_HUBSPOT', 'HUBSPOT_TO_WARP', 'BIDIRECTIONAL')),
    CONSTRAINT hubspot_rule_draft_fields_strategy_valid
        CHECK (strategy IN ('HUBSPOT_WINS', 'WARP_WINS', 'LATEST_WINS', 'MANUAL')),
    CONSTRAINT hubspot_rule_draft_fields_one_way_owner CHECK (
        direction = 'BIDIRECTIONAL'
        OR (direction = 'WARP_TO_HUBSPOT' AND strategy = 'WARP_WINS')
        OR (direction = 'HUBSPOT_TO_WARP' AND strategy = 'HUBSPOT_WINS')
    ),
    CONSTRAINT hubspot_rule_draft_fields_ban_from_warp
        CHECK (warp_field <> 'ban' OR (hubspot_property = 'warp_ban' AND direction = 'WARP_TO_HUBSPOT'))
);

-- The live rules each publish replaced, for a rollback: [{warp_field, hubspot_property, direction, strategy}, ...].
CREATE TABLE hubspot_rule_versions (
    id            bigserial PRIMARY KEY,
    replaced_at   timestamptz NOT NULL DEFAULT now(),
    replaced_by   text NOT NULL,
    -- What replaced them: a draft, or a rollback to an earlier version.
    draft_id      bigint REFERENCES hubspot_rule_drafts (id),
    rolled_back_to bigint REFERENCES hubspot_rule_versions (id),
    rules         jsonb NOT NULL,
    CONSTRAINT hubspot_rule_versions_rules_array CHECK (jsonb_typeof(rules) = 'array')
);

-- What a dry run under a draft found, beside the live rules' plan on the same pull (the review pages show it).
CREATE TABLE hubspot_rule_previews (
    id          bigserial PRIMARY KEY,
    draft_id    bigint NOT NULL REFERENCES hubspot_rule_drafts (id) ON DELETE CASCADE,
    run_id      text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    summary     jsonb NOT NULL,
    CONSTRAINT hubspot_rule_previews_summary_object CHECK (jsonb_typeof(summary) = 'object')
);
CREATE INDEX hubspot_rule_previews_draft_idx ON hubspot_rule_previews (draft_id, created_at DESC);

-- A publish may move a property from one field to another: the live table's one-field-per-property rule is checked
-- at the end of the publishing transaction, not row by row.
ALTER TABLE hubspot_field_mappings DROP CONSTRAINT hubspot_field_mappings_property_key;
ALTER TABLE hubspot_field_mappings ADD CONSTRAINT hubspot_field_mappings_property_key UNIQUE (hubspot_property)
    DEFERRABLE INITIALLY IMMEDIATE;
