"""``python -m aiecs_tracing`` is the ``aiecs-tracing`` command."""

import sys

from aiecs_tracing.cli import main

if __name__ == "__main__":
    sys.exit(main())
