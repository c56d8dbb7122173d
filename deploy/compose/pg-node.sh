#!/bin/bash
# One pg_auto_failover process of the high-availability trial
# (deploy/compose.ha.yaml): `pg-node.sh monitor`, or `pg-node.sh node` with
# NODE_NAME and NODE_HOST. The first data node creates the mediator's roles
# and database once it is the primary (postgres-roles.sh); the second
# becomes its synchronous standby. Replication and the monitor's health
# checks trust the formation's own hosts on its private network; the
# mediator's logins use scram-sha-256. In production use TLS
# (--ssl-self-signed or your certificates) and scram for those too
# (docs/operations.md, "High availability: a synchronous standby").
set -euo pipefail
role=${1:?monitor or node}
export PGDATA=/var/lib/postgresql/data/pgdata
export XDG_CONFIG_HOME=/var/lib/postgresql/data/xdg-config XDG_DATA_HOME=/var/lib/postgresql/data/xdg-data
monitor="postgres://autoctl_node@pg-monitor:5432/pg_auto_failover?sslmode=disable"

if [ ! -f "$PGDATA/PG_VERSION" ]; then
  case "$role" in
  monitor)
    pg_autoctl create monitor --pgdata "$PGDATA" --hostname pg-monitor --auth trust --no-ssl
    ;;
  node)
    until pg_isready -q -d "$monitor"; do sleep 1; done
    pg_autoctl create postgres --pgdata "$PGDATA" --name "${NODE_NAME:?}" --hostname "${NODE_HOST:?}" \
      --monitor "$monitor" --auth trust --no-ssl
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    ;;
  *) echo "pg-node.sh: monitor or node" >&2; exit 2 ;;
  esac
fi

if [ "$role" = node ] && [ "${CREATE_ROLES:-}" = 1 ] && [ ! -f "$PGDATA/.mediator-roles" ]; then
  pg_autoctl run --pgdata "$PGDATA" &
  keeper=$!
  until psql -Atq -d postgres -c "SELECT NOT pg_is_in_recovery()" 2>/dev/null | grep -q t; do sleep 1; done
  POSTGRES_USER=postgres POSTGRES_DB=postgres bash /deploy/postgres-roles.sh
  touch "$PGDATA/.mediator-roles"
  wait "$keeper"
  exit
fi
exec pg_autoctl run --pgdata "$PGDATA"
