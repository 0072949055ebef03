#!/bin/sh
# First start only, after 10-citykpi.sh: TimescaleDB in the service's database (the superuser creates it).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname citykpi -c "CREATE EXTENSION IF NOT EXISTS timescaledb"
