-- Telltale demo schema: the platform's business tables (the seeds' shapes) and Laravel's queue tables.
-- Idempotent: safe to run on every start.

create table if not exists organizations (
    id          bigserial primary key,
    name        text not null unique,
    slug        text not null unique,
    created_at  timestamptz not null default now(),
    deleted_at  timestamptz
);

create table if not exists servers (
    id              bigserial primary key,
    organization_id bigint not null references organizations(id) on delete cascade,
    name            text not null,
    provider        text not null default 'hetzner',
    status          text not null default 'active' check (status in ('provisioning','active','stopped','failed')),
    created_at      timestamptz not null default now(),
    deleted_at      timestamptz
);
create index if not exists servers_organization_id on servers (organization_id) where deleted_at is null;

create table if not exists applications (
    id              bigserial primary key,
    organization_id bigint not null references organizations(id) on delete cascade,
    server_id       bigint references servers(id) on delete set null,
    name            text not null,
    status          text not null default 'running'
                    check (status in ('running','stopped','deploying','failed')),
    created_at      timestamptz not null default now(),
    deleted_at      timestamptz
);
create index if not exists applications_organization_id on applications (organization_id) where deleted_at is null;

create table if not exists terraform_deployments (
    id              bigserial primary key,
    organization_id bigint references organizations(id) on delete cascade,
    server_id       bigint references servers(id) on delete set null,
    provider        text not null default 'hetzner',
    status          text not null default 'pending'
                    check (status in ('pending','running','completed','failed','cancelled')),
    started_at      timestamptz,
    completed_at    timestamptz,
    error_message   text,
    created_at      timestamptz not null default now()
);
create index if not exists terraform_deployments_created_at on terraform_deployments (created_at);
create index if not exists terraform_deployments_status on terraform_deployments (status, completed_at);

create table if not exists licenses (
    id              bigserial primary key,
    organization_id bigint not null references organizations(id) on delete cascade,
    license_key     text not null unique,
    status          text not null default 'active' check (status in ('active','expired','revoked')),
    expires_at      timestamptz not null,
    created_at      timestamptz not null default now()
);

create table if not exists payments (
    id              bigserial primary key,
    organization_id bigint not null references organizations(id) on delete cascade,
    provider        text not null default 'stripe',
    amount_cents    bigint not null check (amount_cents >= 0),
    currency        char(3) not null default 'EUR',
    status          text not null check (status in ('pending','succeeded','failed','refunded')),
    created_at      timestamptz not null default now()
);
create index if not exists payments_created_at on payments (created_at);

-- Laravel's database queue (`php artisan queue:table`) and failed jobs (`queue:failed-table`).
create table if not exists jobs (
    id           bigserial primary key,
    queue        varchar(255) not null,
    payload      text not null,
    attempts     smallint not null default 0,
    reserved_at  integer,
    available_at integer not null,
    created_at   integer not null
);
create index if not exists jobs_queue_index on jobs (queue);

create table if not exists failed_jobs (
    id         bigserial primary key,
    uuid       varchar(255) not null unique,
    connection text not null,
    queue      text not null,
    payload    text not null,
    exception  text not null,
    failed_at  timestamp not null default current_timestamp
);
