#!/usr/bin/env bash
# Redis and RabbitMQ on 127.0.0.1 for the Celery tests: installed from Debian's packages
# when missing (as root), started when down. Safe to run again: does nothing when both answer.
# Exits non-zero, with one line naming the service and how to start it, when it could not
# provide one: at once when a server cannot be installed or dies on start, else after
# STARTUP_SECONDS (RabbitMQ's first boot takes a while).
# REDIS_PORT / RABBITMQ_PORT (default 6379 / 5672) pick other ports (the suite tests this script).
set -u
REDIS_PORT=${REDIS_PORT:-6379}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
STARTUP_SECONDS=${STARTUP_SECONDS:-60}
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fail() { echo "ensure_services: $*" >&2; exit 1; }

need=()
up "$REDIS_PORT" || command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
up "$RABBITMQ_PORT" || command -v rabbitmq-server >/dev/null 2>&1 || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_services: installing ${need[*]} from Debian's packages..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/ensure_services.apt.log 2>&1 \
      || fail "apt-get install ${need[*]} failed (see /tmp/ensure_services.apt.log); install them and rerun"
  else
    fail "${need[*]} not installed and not answering; install them (sudo apt-get install ${need[*]}) and rerun"
  fi
fi

redis_pid=
if ! up "$REDIS_PORT"; then
  mkdir -p /tmp/aiecs-redis
  redis_log=/tmp/aiecs-redis/redis-$REDIS_PORT.log
  : >"$redis_log"
  # Not --daemonize: a server that dies on start (port taken, bad config) is seen at once.
  setsid nohup redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/aiecs-redis --logfile "$redis_log" >>"$redis_log" 2>&1 &
  redis_pid=$!
fi
rabbit_pid=
if ! up "$RABBITMQ_PORT"; then
  # The Debian package may have started it already (then the port answers within seconds).
  for _ in $(seq 1 5); do up "$RABBITMQ_PORT" && break; sleep 1; done
  if ! up "$RABBITMQ_PORT"; then
    RABBITMQ_NODE_PORT=$RABBITMQ_PORT setsid nohup rabbitmq-server >/tmp/ensure_services.rabbitmq.log 2>&1 &
    rabbit_pid=$!
  fi
fi

for _ in $(seq 1 "$STARTUP_SECONDS"); do
  up "$REDIS_PORT" && up "$RABBITMQ_PORT" && break
  if [ -n "$redis_pid" ] && ! up "$REDIS_PORT" && ! kill -0 "$redis_pid" 2>/dev/null; then
    why=$(grep -v '^\s*$' "$redis_log" 2>/dev/null | tail -n 1 || true)
    fail "Redis could not be started on 127.0.0.1:$REDIS_PORT (${why:-redis-server exited}); start it: redis-server --port $REDIS_PORT"
  fi
  if [ -n "$rabbit_pid" ] && ! up "$RABBITMQ_PORT" && ! kill -0 "$rabbit_pid" 2>/dev/null; then
    fail "RabbitMQ could not be started on 127.0.0.1:$RABBITMQ_PORT (see /tmp/ensure_services.rabbitmq.log); start it: rabbitmq-server -detached"
  fi
  sleep 1
done
up "$REDIS_PORT" || fail "Redis is not answering on 127.0.0.1:$REDIS_PORT after ${STARTUP_SECONDS}s; start it: redis-server --port $REDIS_PORT"
up "$RABBITMQ_PORT" || fail "RabbitMQ is not answering on 127.0.0.1:$RABBITMQ_PORT after ${STARTUP_SECONDS}s; start it: rabbitmq-server -detached"
echo "redis: up (127.0.0.1:$REDIS_PORT)"
echo "rabbitmq: up (127.0.0.1:$RABBITMQ_PORT)"
