"""For spark-submit, which needs a script: the same as the console script tile-flatfield.

    spark-submit jobs/flatfield.py ...      (arguments: see `tile-flatfield --help`)
"""

import sys

from pipelines.cli.flatfield import main

if __name__ == "__main__":
    sys.exit(main())
