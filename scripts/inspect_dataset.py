"""Open an exported dataset with tensorstore (a reader we did not write) and describe it.

    python scripts/inspect_dataset.py OUTPUT_URI [--dataset PATH]

Finds the array in an N5 or Zarr v3 container, prints the tensorstore spec that opens
it, its shape and type, and statistics of its middle z-slice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorstore as ts


def find_arrays(root: Path) -> list[tuple[str, str]]:
    """(format, dataset path) of every array under an N5 or Zarr v3 container."""
    found = []
    for meta in sorted(root.rglob("attributes.json")):
        if "dimensions" in json.loads(meta.read_text()):
            found.append(("n5", meta.parent.relative_to(root).as_posix()))
    for meta in sorted(root.rglob("zarr.json")):
        if json.loads(meta.read_text()).get("node_type") == "array":
            found.append(("zarr3", meta.parent.relative_to(root).as_posix()))
    for meta in sorted(root.rglob(".zarray")):
        found.append(("zarr", meta.parent.relative_to(root).as_posix()))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", type=Path)
    parser.add_argument("--dataset", help="array path inside the container (default: the first)")
    args = parser.parse_args(argv)
    arrays = find_arrays(args.uri)
    if args.dataset:
        arrays = [a for a in arrays if a[1] == args.dataset.strip("/")]
    if not arrays:
        print(f"error: no committed N5 or Zarr v3 array under {args.uri}", file=sys.stderr)
        return 2
    fmt, dataset = arrays[0]
    spec = {"driver": fmt, "kvstore": {"driver": "file", "path": str(args.uri.resolve() / dataset)}}
    store = ts.open(spec, open=True).result()
    # N5 is x, y, z; Zarr arrays end in z, y, x (after any t, c axes)
    labels = store.domain.labels
    axes = ", ".join(labels) if any(labels) else ("x, y, z" if fmt == "n5" else "…, z, y, x")
    z_axis = 2 if fmt == "n5" else store.rank - 3
    middle = store[tuple(store.shape[z_axis] // 2 if i == z_axis else slice(None)
                         for i in range(store.rank))].read().result()
    print(f"tensorstore opened {spec}  ({len(arrays)} arrays in the container)")
    print(f"  shape ({axes}) = {list(store.shape)}, dtype {store.dtype.name}, "
          f"chunks {list(store.chunk_layout.read_chunk.shape)}")
    print(f"  middle z-slice: min {middle.min()}, max {middle.max()}, mean {np.mean(middle):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
