"""Drop-ins for code written against OpenTracing and jaeger-client.

``aiecs_tracing.compat.opentracing``: an OpenTracing ``Tracer`` on a manager's span engine
(``tracing.opentracing_tracer``); ``aiecs_tracing.compat.jaeger_client``: jaeger-client's
``Config``. Both need the ``opentracing`` package (``pip install 'aiecs-tracing[opentracing]'``).
"""
