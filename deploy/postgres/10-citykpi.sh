#!/bin/sh
# First start only (docker-entrypoint-initdb.d): the service's own role and database, not the superuser.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE citykpi LOGIN PASSWORD '${CITYKPI_DB_PASSWORD}';
CREATE DATABASE citykpi OWNER citykpi;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname citykpi -c "CREATE EXTENSION IF NOT EXISTS timescaledb"
