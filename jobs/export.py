"""For spark-submit, which needs a script: the same as the console script tile-export.

    spark-submit jobs/export.py ...      (arguments: see `tile-export --help`)
"""

import sys

try:
    from pipelines.cli.export import main
except ModuleNotFoundError as missing:   # one line, not a traceback (trial AG); here, as
    # under YARN's cluster mode this script travels alone: no module of ours is there yet
    where = "this project's package" if (missing.name or "").startswith("pipelines") else \
        f"its dependency {missing.name!r}"
    print(f"error: the driver's Python cannot import {where} ({missing}): give spark-submit "
          f"--py-files dist/pipelines.zip (scripts/package_project.py makes it), or run a "
          f"Python with this project installed (make setup)", file=sys.stderr)
    sys.exit(2)   # the environment, as a Spark that cannot start

if __name__ == "__main__":
    sys.exit(main())
