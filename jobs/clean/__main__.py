"""``python -m jobs.clean SPEC.yaml [--run-id ID] [--json]``: the SparkApplication entry point."""

import sys

from jobs.clean.cli import main

sys.exit(main())
