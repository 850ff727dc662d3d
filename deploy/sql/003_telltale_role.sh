#!/bin/sh
# The compose Postgres runs this once, on its first start, after the schema and the demo rows
# (/docker-entrypoint-initdb.d, in name order): the role Telltale and its exporter connect as, named and
# with the password of their DSN secret, a member of pg_monitor (every session in pg_stat_activity,
# pg_stat_statements) and allowed to read the platform's tables, nothing more. A DSN naming the superuser
# makes nothing. The password is taken as written in the URL: keep it to characters that need no %-escape.
# Executable on purpose: the entrypoint runs an executable script and sources any other.
set -e
dsn=$(cat "${TELLTALE_DATABASE_URL_FILE:-/run/secrets/telltale_database_url}")
rest=${dsn#*://}
case "$rest" in
  *@*) userinfo=${rest%%@*} ;;
  *) userinfo="" ;;
esac
role=${userinfo%%:*}
password=${userinfo#*:}
if [ -n "$role" ] && [ "$role" != "${POSTGRES_USER:-postgres}" ]; then
  if [ "$password" = "$userinfo" ]; then
    echo "003_telltale_role.sh: the DSN names role $role without a password" >&2
    exit 1
  fi
  psql -X -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v role="$role" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
GRANT pg_monitor TO :"role";
GRANT USAGE ON SCHEMA public TO :"role";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"role";
SQL
fi
