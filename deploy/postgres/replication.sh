#!/bin/sh
# Mounted into timescaledb's /docker-entrypoint-initdb.d/, run (or sourced) once, when the data volume is new:
# lets the `scale` profile's timescaledb-replica connect for replication. The image's own
# `host all all all scram-sha-256` line does not match replication connections.
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
