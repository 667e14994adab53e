"""For spark-submit, which needs a script: the same as the console script tile-clean.

    spark-submit jobs/clean.py ...      (arguments: see `tile-clean --help`)
"""

import sys

from pipelines.cli.clean import main

if __name__ == "__main__":
    sys.exit(main())
