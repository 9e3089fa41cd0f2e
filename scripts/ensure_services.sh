#!/usr/bin/env bash
# Start Redis and RabbitMQ on 127.0.0.1 when they are not already up (the integration
# tests need both). Safe to run again; does nothing when both answer.
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 6379; then
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  else
    echo "ensure_services: redis-server not installed; Redis tests will be skipped" >&2
  fi
fi
if ! up 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    rabbitmq-server -detached || true
  else
    echo "ensure_services: rabbitmq-server not installed; RabbitMQ tests will be skipped" >&2
  fi
fi
for _ in $(seq 1 60); do
  r=0; up 6379 || r=1
  a=0; up 5672 || a=1
  if [ $r -eq 0 ] && [ $a -eq 0 ]; then break; fi
  sleep 1
done
up 6379 && echo "redis: up" || echo "redis: down"
up 5672 && echo "rabbitmq: up" || echo "rabbitmq: down"
exit 0
