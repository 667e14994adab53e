"""Open an exported dataset with tensorstore (a reader we did not write) and describe it.

    python scripts/inspect_dataset.py OUTPUT_URI [--dataset PATH]

Finds the array in an N5, Zarr v2 or Zarr v3 container, prints the tensorstore spec that
opens it, its shape, chunks (and shards: the inner-chunk and shard shapes) in x, y, z
order for every format, its type, and statistics of its middle z-slice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorstore as ts


def find_arrays(root: Path) -> list[tuple[str, str]]:
    """(format, dataset path) of every array under an N5, Zarr v2 or Zarr v3 container."""
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
    parser.add_argument("uri", type=Path, help="the container: a local folder (….n5, ….zarr)")
    parser.add_argument("--dataset", help="array path inside the container (default: the first)")
    args = parser.parse_args(argv)
    arrays = everything = find_arrays(args.uri)
    if args.dataset:
        arrays = [a for a in arrays if a[1] == args.dataset.strip("/")]
    if not everything:
        print(f"error: no committed N5 or Zarr array under {args.uri}", file=sys.stderr)
        return 2
    if not arrays:   # a mistyped --dataset: say what there is (trial S)
        print(f"error: {args.dataset} is not an array of {args.uri}; it holds "
              f"{', '.join(path for _, path in everything)}", file=sys.stderr)
        return 2
    fmt, dataset = arrays[0]
    spec = {"driver": fmt, "kvstore": {"driver": "file", "path": str(args.uri.resolve() / dataset)}}
    store = ts.open(spec, open=True).result()
    # N5 arrays are x, y, z; Zarr arrays end in z, y, x after any leading t, c axes: every
    # shape below is printed x, y, z, as the export job prints it, whatever the format
    spatial = _xyz(fmt, store.rank)
    z_axis = spatial[2]
    middle = store[tuple(store.shape[z_axis] // 2 if i == z_axis else slice(None)
                         for i in range(store.rank))].read().result()
    layout = store.chunk_layout
    print(f"tensorstore opened {spec}  ({len(everything)} arrays in the container)")
    names = _ome_axes(args.uri, dataset) or list(store.domain.labels)
    print(f"  shape (x, y, z) = {_pick(store.shape, spatial)}{_lead(store, spatial, names)}, "
          f"dtype {store.dtype.name}, chunks (x, y, z) {_pick(layout.read_chunk.shape, spatial)}")
    if list(layout.write_chunk.shape) != list(layout.read_chunk.shape):   # sharded
        print(f"  shards (x, y, z) {_pick(layout.write_chunk.shape, spatial)}: each holds "
              f"{_pick([w // r for w, r in zip(layout.write_chunk.shape, layout.read_chunk.shape)], spatial)} "
              f"inner chunks of {_pick(layout.read_chunk.shape, spatial)} voxels")
    print(f"  middle z-slice: min {middle.min()}, max {middle.max()}, mean {np.mean(middle):.1f}")
    return 0


def _xyz(fmt: str, rank: int) -> tuple[int, int, int]:
    """The positions of the x, y and z axes in an array of `fmt` with `rank` dimensions."""
    return (0, 1, 2) if fmt == "n5" else (rank - 1, rank - 2, rank - 3)


def _pick(values, axes: tuple[int, ...]) -> list[int]:
    return [int(values[a]) for a in axes]


def _lead(store, spatial: tuple[int, ...], names: list[str]) -> str:
    """The other axes (t, c of OME-Zarr) with their sizes, e.g. ", c = 2"."""
    return "".join(f", {names[i] if i < len(names) and names[i] else f'axis {i}'} = {store.shape[i]}"
                   for i in range(store.rank) if i not in spatial)


def _ome_axes(root: Path, dataset: str) -> list[str]:
    """The axis names OME-Zarr's multiscales give the array at `dataset` (Zarr v2 arrays
    carry none of their own: trial AB saw "axis 0" for OME-Zarr 0.4's c and t); [] when
    no group above it describes it."""
    parts = dataset.split("/") if dataset else []
    for depth in range(len(parts) - 1, -1, -1):
        group = root.joinpath(*parts[:depth])
        attributes = {}
        if (group / ".zattrs").is_file():
            attributes = json.loads((group / ".zattrs").read_text())
        elif (group / "zarr.json").is_file():
            attributes = json.loads((group / "zarr.json").read_text()).get("attributes", {})
        attributes = attributes.get("ome", attributes)   # OME-Zarr 0.5 nests them under "ome"
        below = "/".join(parts[depth:])
        for multiscale in attributes.get("multiscales", []):
            if any(d.get("path") == below for d in multiscale.get("datasets", [])):
                return [axis.get("name", "") for axis in multiscale.get("axes", [])]
    return []


if __name__ == "__main__":
    sys.exit(main())
