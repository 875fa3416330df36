-- WARP customers: the records warp-sync keeps in step with HubSpot companies.
-- Value sets are DESIGN.md's; id, ban and created_at never change after creation.

CREATE TABLE customers (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ban                 text NOT NULL,
    company_name        text NOT NULL,
    status              text NOT NULL DEFAULT 'PENDING',
    credit_limit        numeric(14, 2),
    current_balance     numeric(14, 2) NOT NULL DEFAULT 0,
    payment_terms       text,
    services            jsonb NOT NULL DEFAULT '{"voice": false, "messaging": false, "data": false}',
    contact_email       text,
    external_ids        jsonb NOT NULL DEFAULT '{}',
    hubspot_link_status text NOT NULL DEFAULT 'unlinked',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_ban_key UNIQUE (ban),
    CONSTRAINT customers_ban_format CHECK (ban ~ '^ZT-[0-9]{9}$'),
    CONSTRAINT customers_company_name_present CHECK (btrim(company_name) <> ''),
    CONSTRAINT customers_status_valid CHECK (status IN ('PENDING', 'ACTIVE', 'SUSPENDED', 'CLOSED')),
    CONSTRAINT customers_credit_limit_non_negative CHECK (credit_limit IS NULL OR credit_limit >= 0),
    CONSTRAINT customers_payment_terms_valid
        CHECK (payment_terms IS NULL OR payment_terms IN ('PREPAID', 'NET15', 'NET30', 'NET45', 'NET60')),
    CONSTRAINT customers_services_shape CHECK (
        jsonb_typeof(services) = 'object'
        AND services ?& ARRAY['voice', 'messaging', 'data']
        AND jsonb_typeof(services -> 'voice') = 'boolean'
        AND jsonb_typeof(services -> 'messaging') = 'boolean'
        AND jsonb_typeof(services -> 'data') = 'boolean'
        AND (services - 'voice' - 'messaging' - 'data') = '{}'::jsonb
    ),
    CONSTRAINT customers_contact_email_format
        CHECK (contact_email IS NULL OR contact_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'),
    CONSTRAINT customers_external_ids_object CHECK (jsonb_typeof(external_ids) = 'object'),
    CONSTRAINT customers_link_status_valid
        CHECK (hubspot_link_status IN ('unlinked', 'linked', 'deleted', 'review'))
);

-- One HubSpot company links to at most one customer.
CREATE UNIQUE INDEX customers_hubspot_company_id_key
    ON customers ((external_ids ->> 'hubspot_company_id'))
    WHERE external_ids ? 'hubspot_company_id';

-- Keyset pagination of the nightly pull walks the primary key; this one serves "recently changed".
CREATE INDEX customers_updated_at_idx ON customers (updated_at);

-- id, ban and created_at are immutable; updated_at follows every real change.
CREATE FUNCTION customers_guard_and_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'customers.id is immutable' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.ban IS DISTINCT FROM OLD.ban THEN
        RAISE EXCEPTION 'customers.ban is immutable (% -> %)', OLD.ban, NEW.ban
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'customers.created_at is immutable' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER customers_guard_and_touch
    BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_guard_and_touch();
