"""The demo system: a small AIECS in four processes, traced end to end.

``aiecs-tracing demo`` (see :mod:`aiecs_tracing.demo.run`: options, backend, supervisor, workload) starts the collector, then

* ``aiecs-api`` (:mod:`.api`): a FastAPI task API with Socket.IO progress pushes,
* ``aiecs-worker`` (:mod:`.worker`): a Celery prefork worker running the tasks,
* ``ml-service`` (:mod:`.ml_service`): a downstream FastAPI model service,

each its own process with its own ``TracingManager`` configured from the environment
(the API and worker over Jaeger UDP, the ML service over OTLP/HTTP), drives a workload
through them and prints every trace as a tree.
"""
