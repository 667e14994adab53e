"""For spark-submit, which needs a script: the same as the console script tile-flatfield.

    spark-submit jobs/flatfield.py ...      (arguments: see `tile-flatfield --help`)
"""

import sys

try:
    from pipelines.cli.flatfield import main
except ModuleNotFoundError as missing:   # one line, not a traceback (trial AG); here, as
    # under YARN's cluster mode this script travels alone: no module of ours is there yet
    stale = missing.name != "pipelines"   # a part of it: a zip of an older checkout
    print(f"error: the driver's Python cannot import this project's package ({missing}): "
          f"{'rebuild dist/pipelines.zip' if stale else 'give spark-submit --py-files dist/pipelines.zip'} "
          f"(scripts/package_project.py makes it), or run a Python with this project installed "
          f"(make setup)", file=sys.stderr)
    sys.exit(2)   # the environment, as a Spark that cannot start

if __name__ == "__main__":
    sys.exit(main())
