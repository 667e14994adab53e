"""For spark-submit, which needs a script: the same as the console script tile-export.

    spark-submit jobs/export.py ...      (arguments: see `tile-export --help`)
"""

import sys

from pipelines.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
