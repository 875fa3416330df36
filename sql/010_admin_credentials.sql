-- Named admin credentials (DESIGN.md, Security): tokens stored hashed, each with roles.
-- Several rows may share a name, so a credential can be rotated with two valid at once.

CREATE TABLE admin_credentials (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    token_hash   text NOT NULL,
    roles        text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT admin_credentials_token_hash_key UNIQUE (token_hash),
    CONSTRAINT admin_credentials_name_present CHECK (btrim(name) <> ''),
    CONSTRAINT admin_credentials_roles_valid
        CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['admin', 'resolver']::text[])
);

CREATE INDEX admin_credentials_active_name_idx ON admin_credentials (name) WHERE revoked_at IS NULL;
