-- Telltale demo data, with timestamps relative to now() so the last-hour and last-24h readings have rows.
-- Replaces whatever demo data is there.

truncate organizations, servers, applications, terraform_deployments, licenses, payments, jobs, failed_jobs
    restart identity cascade;

insert into organizations (name, slug) values
    ('Acme', 'acme'), ('Globex', 'globex'), ('Initech', 'initech');
insert into organizations (name, slug, deleted_at) values ('Gone', 'gone', now() - interval '3 days');

-- Acme: 3 servers, 4 applications (3 running); Globex: 2 servers, 2 apps (1 running); Initech: 1 server, 0 apps.
insert into servers (organization_id, name, status) values
    (1, 'acme-web-1', 'active'), (1, 'acme-web-2', 'active'), (1, 'acme-db-1', 'active'),
    (2, 'globex-1', 'active'), (2, 'globex-2', 'stopped'),
    (3, 'initech-1', 'provisioning');
insert into servers (organization_id, name, status, deleted_at) values (1, 'acme-old', 'stopped', now() - interval '1 day');

insert into applications (organization_id, server_id, name, status) values
    (1, 1, 'shop', 'running'), (1, 2, 'api', 'running'), (1, 2, 'admin', 'running'), (1, 3, 'reports', 'stopped'),
    (2, 4, 'portal', 'running'), (2, 5, 'legacy', 'failed');
insert into applications (organization_id, server_id, name, status, deleted_at)
    values (1, 1, 'retired', 'running', now() - interval '2 days');

-- Deployments: last hour 3 completed (60 s, 120 s, 180 s) and 1 failed; earlier today 2 completed (300 s each)
-- and 1 failed; 1 running now; one completed two days ago (outside every window).
insert into terraform_deployments (organization_id, server_id, status, started_at, completed_at, created_at) values
    (1, 1, 'completed', now() - interval '30 minutes', now() - interval '29 minutes', now() - interval '31 minutes'),
    (1, 2, 'completed', now() - interval '20 minutes', now() - interval '18 minutes', now() - interval '21 minutes'),
    (2, 4, 'completed', now() - interval '15 minutes', now() - interval '12 minutes', now() - interval '16 minutes'),
    (2, 5, 'failed',    now() - interval '10 minutes', now() - interval '9 minutes',  now() - interval '11 minutes'),
    (1, 3, 'completed', now() - interval '5 hours',    now() - interval '295 minutes', now() - interval '5 hours'),
    (3, 6, 'completed', now() - interval '6 hours',    now() - interval '355 minutes', now() - interval '6 hours'),
    (3, 6, 'failed',    now() - interval '7 hours',    now() - interval '419 minutes', now() - interval '7 hours'),
    (1, 1, 'running',   now() - interval '2 minutes',  null,                           now() - interval '2 minutes'),
    (1, 1, 'completed', now() - interval '2 days',     now() - interval '2 days' + interval '100 seconds',
                                                                                        now() - interval '2 days');

insert into licenses (organization_id, license_key, status, expires_at) values
    (1, 'ACME-0001', 'active', date_trunc('second', now()) + interval '30 days'),
    (2, 'GLOBEX-0001', 'active', date_trunc('second', now()) + interval '5 days'),
    (3, 'INITECH-0001', 'expired', date_trunc('second', now()) - interval '1 day');

-- Payments in the last hour: 4 succeeded, 1 failed; plus one from yesterday.
insert into payments (organization_id, provider, amount_cents, currency, status, created_at) values
    (1, 'stripe', 4900, 'EUR', 'succeeded', now() - interval '5 minutes'),
    (1, 'stripe', 4900, 'EUR', 'succeeded', now() - interval '15 minutes'),
    (2, 'stripe', 19900, 'EUR', 'succeeded', now() - interval '25 minutes'),
    (2, 'paypal', 990, 'USD', 'succeeded', now() - interval '35 minutes'),
    (3, 'stripe', 4900, 'EUR', 'failed', now() - interval '45 minutes'),
    (1, 'stripe', 4900, 'EUR', 'succeeded', now() - interval '1 day');

-- Laravel database queue "default": 3 waiting (oldest 10 minutes), 1 reserved; 2 failed.
insert into jobs (queue, payload, attempts, reserved_at, available_at, created_at) values
    ('default', '{"displayName":"App\\Jobs\\Deploy"}', 0, null,
        extract(epoch from now())::int - 600, extract(epoch from now())::int - 600),
    ('default', '{"displayName":"App\\Jobs\\Deploy"}', 0, null,
        extract(epoch from now())::int - 60, extract(epoch from now())::int - 60),
    ('default', '{"displayName":"App\\Jobs\\Mail"}', 0, null,
        extract(epoch from now())::int - 5, extract(epoch from now())::int - 5),
    ('default', '{"displayName":"App\\Jobs\\Mail"}', 1, extract(epoch from now())::int - 2,
        extract(epoch from now())::int - 30, extract(epoch from now())::int - 30);
insert into failed_jobs (uuid, connection, queue, payload, exception) values
    ('9f1c0a2e-0001-4c1e-9a00-000000000001', 'database', 'default', '{}', 'RuntimeException: boom'),
    ('9f1c0a2e-0001-4c1e-9a00-000000000002', 'database', 'default', '{}', 'RuntimeException: boom');
