"""For spark-submit, which needs a script: the same as the console script tile-stitch.

    spark-submit jobs/stitch.py ...      (arguments: see `tile-stitch --help`)
"""

import sys

from pipelines.cli.stitch import main

if __name__ == "__main__":
    sys.exit(main())
