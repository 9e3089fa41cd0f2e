#!/usr/bin/env bash
# Redis and RabbitMQ on 127.0.0.1 for the Celery tests: installed from Debian's packages
# when missing (as root), started when down. Safe to run again: does nothing when both answer.
# Exits non-zero, with one line naming the service, when it could not provide one.
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v rabbitmq-server >/dev/null 2>&1 || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ] && ! { up 6379 && up 5672; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_services: installing ${need[*]} from Debian's packages..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null 2>&1 || true
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/ensure_services.apt.log 2>&1; then
      echo "ensure_services: apt-get install ${need[*]} failed (see /tmp/ensure_services.apt.log)" >&2
    fi
  else
    echo "ensure_services: install ${need[*]} (e.g. sudo apt-get install ${need[*]}) to run the Celery broker tests" >&2
  fi
fi

if ! up 6379 && command -v redis-server >/dev/null 2>&1; then
  mkdir -p /tmp/aiecs-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/aiecs-redis --logfile /tmp/aiecs-redis/redis.log >/dev/null || true
fi
if ! up 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  # The Debian package may have started it already (then 5672 answers within seconds).
  for _ in $(seq 1 5); do up 5672 && break; sleep 1; done
  up 5672 || rabbitmq-server -detached >/dev/null 2>&1 || true
fi
for _ in $(seq 1 60); do
  up 6379 && up 5672 && break
  sleep 1
done
status=0
if up 6379; then echo "redis: up (127.0.0.1:6379)"; else echo "ensure_services: Redis is not answering on 127.0.0.1:6379" >&2; status=1; fi
if up 5672; then echo "rabbitmq: up (127.0.0.1:5672)"; else echo "ensure_services: RabbitMQ is not answering on 127.0.0.1:5672" >&2; status=1; fi
exit $status
