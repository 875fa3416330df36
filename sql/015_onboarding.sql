-- Day one (issue 15): the onboarding preview and its candidate rows, read by the review pages and the approval.
-- A preview is made from one pair of pulls and writes nothing to either side; only the newest one not yet
-- approved can be approved (older ones are superseded when a new one is stored).

CREATE TABLE onboarding_previews (
    id bigserial PRIMARY KEY,
    run_id text,
    pulled_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'ready',
    -- counts per category, the field rules' outcomes on the pairs to link, the portal's checks
    summary jsonb NOT NULL,
    approved_by text,
    approved_at timestamptz,
    approval jsonb,  -- the approver's choices: create_missing, set_domain
    execution jsonb,  -- what the execution did (the last run's counts)
    CONSTRAINT onboarding_previews_status_valid
        CHECK (status IN ('ready', 'approved', 'superseded', 'executing', 'executed'))
);

CREATE TABLE onboarding_candidates (
    id bigserial PRIMARY KEY,
    preview_id bigint NOT NULL REFERENCES onboarding_previews (id) ON DELETE CASCADE,
    customer_id uuid,  -- none for a company nobody matched
    company_id text,   -- none for a customer without a candidate
    -- the company as the preview's pull saw it (the customer's side is read from customers)
    company_name text,
    company_domains text,
    category text NOT NULL,
    matched_domain text,
    name_score numeric(5, 1),
    second_score numeric(5, 1),
    reasons text,
    -- a person's decision on a review candidate or a cluster (the approval and link pages)
    decision text,
    decided_by text,
    decided_at timestamptz,
    -- the labelling sample: rows drawn across categories and scores, which a person marks as the same
    -- organisation or not, to measure each category's precision before approving
    in_sample boolean NOT NULL DEFAULT false,
    label text,
    labelled_by text,
    labelled_at timestamptz,
    CONSTRAINT onboarding_candidates_category_valid CHECK (category IN (
        'linked_by_ban', 'auto_link', 'review', 'many_to_one', 'no_candidate', 'duplicate_ban', 'company_alone')),
    CONSTRAINT onboarding_candidates_decision_valid CHECK (decision IN ('confirmed', 'rejected')),
    CONSTRAINT onboarding_candidates_label_valid CHECK (label IN ('same', 'different')),
    CONSTRAINT onboarding_candidates_has_a_side CHECK (customer_id IS NOT NULL OR company_id IS NOT NULL)
);

CREATE INDEX onboarding_candidates_preview_category_idx ON onboarding_candidates (preview_id, category);
CREATE INDEX onboarding_candidates_customer_idx ON onboarding_candidates (customer_id);
CREATE INDEX onboarding_candidates_sample_idx ON onboarding_candidates (preview_id) WHERE in_sample;

-- The execution's links and creates are audited as the onboarding's.
ALTER TABLE hubspot_sync_log DROP CONSTRAINT hubspot_sync_log_trigger_valid;
ALTER TABLE hubspot_sync_log ADD CONSTRAINT hubspot_sync_log_trigger_valid CHECK (
    trigger IN ('create', 'queue', 'webhook', 'reconciliation', 'manual', 'resolution', 'mapping', 'onboarding')
);
