#!/bin/sh
# For deploy/compose.yaml: postgres runs this once, when it initialises an empty data
# directory (the image's /docker-entrypoint-initdb.d). It creates flashq_app, the role
# the app and the scheduler log in as, with the password of the postgres_app_password
# secret. The role owns nothing and is no superuser; the migration, which runs as the
# tables' owner, grants it the rows it needs (manage.py grant_runtime_role flashq_app).
# The password is read by psql itself, so it never appears on a command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\set password `cat /run/secrets/postgres_app_password`
SELECT format('CREATE ROLE flashq_app LOGIN PASSWORD %L', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flashq_app') \gexec
SQL
