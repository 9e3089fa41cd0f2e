"""``python -m aiecs_tracing.demo``: the same as ``aiecs-tracing demo``."""

from .run import main

raise SystemExit(main())
