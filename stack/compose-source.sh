#!/bin/sh
# compose's postgres init (docker-entrypoint-initdb.d, first start of the volume only): the `source` database
# capture.ts reads, with its users table. The image's superuser owns it, and may replicate.
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c 'create database source'
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d source -f /stack/source.sql
