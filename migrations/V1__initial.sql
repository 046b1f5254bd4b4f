-- The whole state of the service. Jobs move through job_state only by the
-- transitions of src/jobs/state.rs; every move appends one job_events row in
-- the same transaction.

CREATE TYPE job_state AS ENUM ('uploading', 'queued', 'processing', 'done', 'failed', 'cancelled');

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    email             text NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash     text NOT NULL,
    notify_on_success boolean NOT NULL DEFAULT false,
    webhook_url       text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per uploaded video: the video as the API shows it and its job.
CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename        text NOT NULL,
    state           job_state NOT NULL,
    progress        real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    options         jsonb NOT NULL,
    size_bytes      bigint,
    media_info      jsonb,
    frames          integer,
    zip_bytes       bigint,
    -- the zip object of the claim whose completion won the lease fence:
    -- every claim writes its own, so a fenced-out one cannot replace it
    zip_object      text,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL CHECK (max_attempts > 0),
    -- uploading: the node streaming the file; processing: the node holding the lease
    owner_node      text,
    lease_token     uuid,
    lease_until     timestamptz,
    run_after       timestamptz NOT NULL DEFAULT now(),
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    expired_at      timestamptz,
    CONSTRAINT failed_has_reason CHECK (state <> 'failed' OR error IS NOT NULL),
    CONSTRAINT processing_has_lease CHECK (state <> 'processing' OR (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    CONSTRAINT one_job_per_idempotency_key UNIQUE (user_id, idempotency_key)
);

CREATE INDEX jobs_by_owner ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_claimable ON jobs (run_after, created_at) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'processing';
CREATE INDEX jobs_retention ON jobs (finished_at) WHERE state = 'done' AND expired_at IS NULL;

CREATE TABLE job_events (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    from_state job_state,
    to_state   job_state NOT NULL,
    node       text NOT NULL,
    attempt    integer NOT NULL,
    detail     text,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_events_by_job ON job_events (job_id, id);

-- The outbox: written in the transaction that causes it, delivered by the notifier.
CREATE TABLE notifications (
    id              uuid PRIMARY KEY,
    user_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    job_id          uuid,
    kind            text NOT NULL CHECK (kind IN ('job_failed', 'job_done')),
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    sent_at         timestamptz,
    gave_up_at      timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE sent_at IS NULL AND gave_up_at IS NULL;

-- Revoked session tokens, by biscuit revocation id, kept until they expire anyway.
CREATE TABLE revoked_tokens (
    revocation_id bytea PRIMARY KEY,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz NOT NULL DEFAULT now()
);

-- The token root key when none is configured: generated once, shared by all nodes.
CREATE TABLE signing_keys (
    id              integer PRIMARY KEY CHECK (id = 1),
    private_key_hex text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
