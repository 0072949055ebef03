#!/bin/sh
# First start only (docker-entrypoint-initdb.d): the service's own role and database, not the superuser.
# The password reaches SQL as a psql variable quoted by psql (:'password'), so no character of it can end the
# string and run SQL of its own.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -v password="$CITYKPI_DB_PASSWORD" <<'SQL'
CREATE ROLE citykpi LOGIN PASSWORD :'password';
CREATE DATABASE citykpi OWNER citykpi;
SQL
