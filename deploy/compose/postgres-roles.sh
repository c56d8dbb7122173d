#!/bin/bash
# Runs once, when the PostgreSQL container first creates its data
# directory, as the superuser: the schema owner and the runtime login role
# of docs/deploy.md step 1. The superuser's password never leaves the
# postgres service; the mediator gets only the runtime role's URL.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
  -v owner=mediator_owner -v app=mediator_app -v db=mediator \
  -v owner_pw="$MEDIATOR_OWNER_PASSWORD" -v app_pw="$MEDIATOR_RUNTIME_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE mediator_runtime NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mediator_runtime') \gexec
CREATE ROLE :"owner" LOGIN NOCREATEROLE NOSUPERUSER PASSWORD :'owner_pw';
CREATE ROLE :"app" LOGIN NOCREATEROLE NOSUPERUSER PASSWORD :'app_pw';
GRANT mediator_runtime TO :"app";
CREATE DATABASE :"db" OWNER :"owner";
REVOKE CONNECT, TEMPORARY ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";
SQL
