#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) answer,
# starting them with this machine's service commands if they do not.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "error: $name is not answering on 127.0.0.1:$port after 60 s" >&2
  return 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL…"
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  else
    echo "error: PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not installed." >&2
    echo "       Install PostgreSQL (trust auth for 127.0.0.1) or set CRM_TEST_DATABASE_URL." >&2
    exit 1
  fi
  wait_port 5432 PostgreSQL
fi

if ! port_open 5672; then
  echo "starting RabbitMQ…"
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached
  else
    echo "error: RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed." >&2
    echo "       Install RabbitMQ (guest/guest on localhost) or set CRM_TEST_AMQP_URL." >&2
    exit 1
  fi
  wait_port 5672 RabbitMQ
fi
# A broker whose port is open may still be booting its apps.
if command -v rabbitmqctl >/dev/null; then
  timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || rabbitmqctl start_app >/dev/null 2>&1 || true
fi
echo "PostgreSQL and RabbitMQ are up."
