"""``python -m feeder serve TABLE ...`` (the feeder SparkApplication's entry) and ``status``."""

import sys

from feeder.cli import main

if __name__ == "__main__":
    sys.exit(main())
