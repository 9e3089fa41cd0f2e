# The demo services' image (aiecs-api, aiecs-worker, ml-service and the workload driver);
# see docker-compose.yml. The library itself needs nothing from this file.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY aiecs_tracing ./aiecs_tracing
# [all]: Celery with Redis, FastAPI, uvicorn, httpx, python-socketio; aiohttp for the
# driver's Socket.IO client.
RUN pip install ".[all]" aiohttp

# Not root: Celery warns about root workers, and nothing here needs it.
RUN useradd --create-home --uid 10001 aiecs && mkdir -p /data && chown aiecs:aiecs /data
USER aiecs
VOLUME ["/data"]
EXPOSE 8000 8001

CMD ["python", "-m", "aiecs_tracing.demo.api", "--host", "0.0.0.0", "--port", "8000"]
