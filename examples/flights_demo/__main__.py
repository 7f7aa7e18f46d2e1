"""``python -m examples.flights_demo``: run the demo (see :mod:`examples.flights_demo.cli`)."""

import sys

from examples.flights_demo.cli import main

sys.exit(main())
