"""For spark-submit, which needs a script: the same as the console script tile-verify.

    spark-submit jobs/verify.py ...      (arguments: see `tile-verify --help`)
"""

import sys

from pipelines.cli.verify import main

if __name__ == "__main__":
    sys.exit(main())
