"""BigStitcher projects generated for the tests: a phantom defined in world space, sampled
through known affines into views, written as TIFF, N5, HDF5 or OME-Zarr with their XML.

The views are written with independent writers (tifffile, tensorstore, h5py, zarr-python),
and the phantom is a formula, so a fused volume is judged against `phantom(world)` and
never against anything this package computed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VOXEL_X = 0.5   # µm per world unit (the views' x voxel size)

# blobs: centre (world x, y, z), sigma (world units), amplitude
_RNG = np.random.default_rng(7)
BLOBS = [(tuple(_RNG.uniform((4, 4, 4), (60, 60, 44))), float(_RNG.uniform(2.5, 4.0)),
          float(_RNG.uniform(800, 3000))) for _ in range(70)]
BACKGROUND = 300.0


def phantom(world: np.ndarray) -> np.ndarray:
    """The phantom's value at world points (..., 3) in x, y, z: smooth blobs on a smooth
    background ramp."""
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    value = BACKGROUND + 4.0 * x + 2.0 * y + 3.0 * z
    for (cx, cy, cz), sigma, amplitude in BLOBS:
        value = value + amplitude * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma ** 2))
    return value


def matrix(rows) -> np.ndarray:
    m = np.eye(4)
    m[:3] = np.asarray(rows, dtype=float).reshape(3, 4)
    return m


def translation(x, y, z) -> np.ndarray:
    return matrix([1, 0, 0, x, 0, 1, 0, y, 0, 0, 1, z])


def rotation_y(degrees: float, centre) -> np.ndarray:
    """A rotation about the y axis through `centre` (world)."""
    a = np.deg2rad(degrees)
    r = matrix([np.cos(a), 0, np.sin(a), 0, 0, 1, 0, 0, -np.sin(a), 0, np.cos(a), 0])
    return translation(*centre) @ r @ translation(*(-np.asarray(centre)))


@dataclass
class View:
    setup: int
    size: tuple[int, int, int]          # pixels x, y, z
    chain: list[tuple[str, np.ndarray]]  # ViewTransforms as listed (name, 4 × 4)
    voxel: tuple[float, float, float]   # µm
    tile: int = 0
    angle: int = 0
    channel: int = 0
    gain: float = 1.0   # the view's brightness: its pixels are the phantom's times this

    @property
    def affine(self) -> np.ndarray:
        """world ← pixel: T0 · T1 · … · Tn."""
        m = np.eye(4)
        for _, t in self.chain:
            m = m @ t
        return m

    def pixels(self) -> np.ndarray:
        """The view sampled from the phantom, z, y, x uint16."""
        nx, ny, nz = self.size
        z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        pixel = np.stack([x, y, z, np.ones_like(x)], axis=-1).astype(float)
        world = pixel @ self.affine.T
        return np.clip(np.rint(self.gain * phantom(world[..., :3])), 0, 65535).astype(np.uint16)


def calibration(voxel) -> np.ndarray:
    sx, sy, sz = (v / voxel[0] for v in voxel)
    return matrix([sx, 0, 0, 0, 0, sy, 0, 0, 0, 0, sz, 0])


def scenario(name: str) -> list[View]:
    """Views of one kind of acquisition (all covering the phantom's middle):
    - "grid": 2 × 2 × 1 tiles of anisotropic voxels (z twice x), 20 % overlap;
    - "angles": two views of the whole sample, the second rotated 30° about y;
    - "oblique": two tiles of a skewed (sheared) scan, z-steps moving along x."""
    if name == "grid":
        voxel = (VOXEL_X, VOXEL_X, 2 * VOXEL_X)
        views, n = [], 0
        for ty in range(2):
            for tx in range(2):
                grid = translation(tx * 28.0, ty * 28.0, 0.0)
                views.append(View(n, (36, 36, 24), [("Translation to Regular Grid", grid),
                                                    ("calibration", calibration(voxel))], voxel, tile=n))
                n += 1
        return views
    if name == "angles":
        voxel = (VOXEL_X, VOXEL_X, VOXEL_X)
        centre = (32.0, 32.0, 24.0)
        return [View(0, (64, 64, 48), [("calibration", calibration(voxel))], voxel, angle=0),
                View(1, (56, 64, 40), [("rotation around y-axis by 30.0 degrees", rotation_y(30, centre)),
                                       ("Translation", translation(4.0, 0.0, 4.0)),
                                       ("calibration", calibration(voxel))], voxel, angle=1)]
    if name == "oblique":
        voxel = (VOXEL_X, VOXEL_X, VOXEL_X)
        shear = matrix([1, 0, 0.5, 0, 0, 1, 0, 0, 0, 0, 1, 0])   # x moves by 0.5 per z-step
        return [View(n, (40, 64, 40), [("Translation to Regular Grid", translation(n * 30.0, 0, 2.0)),
                                       ("skew", shear), ("calibration", calibration(voxel))],
                     voxel, tile=n) for n in range(2)]
    raise ValueError(name)


def covered(world: np.ndarray, views: list[View], margin: float = 0.0) -> np.ndarray:
    """Where some view covers world points (..., 3): their pixel coordinates lie inside
    [margin, n - 1 - margin] on every axis of at least one view."""
    out = np.zeros(world.shape[:-1], dtype=bool)
    points = np.concatenate([world, np.ones(world.shape[:-1] + (1,))], axis=-1)
    for v in views:
        u = points @ np.linalg.inv(v.affine).T
        inside = np.ones(world.shape[:-1], dtype=bool)
        for axis, n in enumerate(v.size):
            inside &= (u[..., axis] >= margin) & (u[..., axis] <= n - 1 - margin)
        out |= inside
    return out


def write_project(folder: Path, views: list[View], loader: str, name: str = "dataset") -> Path:
    """Write the views' pixels with `loader` ("tiff", "n5", "hdf5", "zarr") and the XML;
    returns the XML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    root = ET.Element("SpimData", version="0.2")
    ET.SubElement(root, "BasePath", type="relative").text = "."
    sequence = ET.SubElement(root, "SequenceDescription")
    sequence.append(_write_pixels(folder, views, loader, name))
    setups = ET.SubElement(sequence, "ViewSetups")
    for v in views:
        s = ET.SubElement(setups, "ViewSetup")
        ET.SubElement(s, "id").text = str(v.setup)
        ET.SubElement(s, "name").text = f"setup {v.setup}"
        ET.SubElement(s, "size").text = " ".join(map(str, v.size))
        voxel = ET.SubElement(s, "voxelSize")
        ET.SubElement(voxel, "unit").text = "µm"
        ET.SubElement(voxel, "size").text = " ".join(map(str, v.voxel))
        attributes = ET.SubElement(s, "attributes")
        for key, value in (("illumination", 0), ("channel", v.channel), ("tile", v.tile), ("angle", v.angle)):
            ET.SubElement(attributes, key).text = str(value)
    for kind, tag, ids in (("channel", "Channel", {v.channel for v in views}),
                           ("tile", "Tile", {v.tile for v in views}),
                           ("angle", "Angle", {v.angle for v in views}), ("illumination", "Illumination", {0})):
        group = ET.SubElement(setups, "Attributes", name=kind)
        for i in sorted(ids):
            element = ET.SubElement(group, tag)
            ET.SubElement(element, "id").text = str(i)
            ET.SubElement(element, "name").text = f"{kind}{i}" if kind == "channel" else str(i)
    timepoints = ET.SubElement(sequence, "Timepoints", type="pattern")
    ET.SubElement(timepoints, "integerpattern").text = "0"
    ET.SubElement(sequence, "MissingViews")
    registrations = ET.SubElement(root, "ViewRegistrations")
    for v in views:
        r = ET.SubElement(registrations, "ViewRegistration", timepoint="0", setup=str(v.setup))
        for label, m in v.chain:
            t = ET.SubElement(r, "ViewTransform", type="affine")
            ET.SubElement(t, "Name").text = label
            ET.SubElement(t, "affine").text = " ".join(repr(float(x)) for x in m[:3].reshape(12))
    path = folder / f"{name}.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _write_pixels(folder: Path, views: list[View], loader: str, name: str) -> ET.Element:
    element = ET.Element("ImageLoader")
    if loader == "tiff":
        import tifffile
        element.set("format", "spimreconstruction.filemap2")
        files = ET.SubElement(element, "files")
        for v in views:
            file = f"view-{v.setup}.tif"
            tifffile.imwrite(folder / file, v.pixels())
            m = ET.SubElement(files, "FileMapping", view_setup=str(v.setup), timepoint="0",
                              series="0", channel="0")
            ET.SubElement(m, "file", type="relative").text = file
    elif loader == "n5":
        import tensorstore as ts
        element.set("format", "bdv.n5")
        ET.SubElement(element, "n5", type="relative").text = f"{name}.n5"
        for v in views:
            store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(folder / f"{name}.n5")},
                             "path": f"setup{v.setup}/timepoint0/s0",
                             "metadata": {"dimensions": list(v.size), "blockSize": [16, 16, 8],
                                          "dataType": "uint16", "compression": {"type": "gzip"}}},
                            create=True).result()
            store[...] = v.pixels().transpose()   # tensorstore's N5 indices are x, y, z
    elif loader == "hdf5":
        import h5py
        element.set("format", "bdv.hdf5")
        ET.SubElement(element, "hdf5", type="relative").text = f"{name}.h5"
        with h5py.File(folder / f"{name}.h5", "w") as f:
            for v in views:
                # BigDataViewer stores unsigned 16-bit views as int16
                f.create_dataset(f"t00000/s{v.setup:02d}/0/cells", data=v.pixels().view(np.int16),
                                 chunks=(8, 16, 16))
    elif loader == "zarr":
        import zarr
        element.set("format", "bdv.multimg.zarr")
        element.set("version", "1.0")
        ET.SubElement(element, "zarr", type="relative").text = f"{name}.ome.zarr"
        groups = ET.SubElement(element, "zgroups")
        for v in views:
            group_path = f"tile{v.setup}.zarr"
            group = zarr.open_group(str(folder / f"{name}.ome.zarr" / group_path), mode="w", zarr_format=2)
            group.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}],
                                           "axes": [{"name": a, "type": t} for a, t in
                                                    (("t", "time"), ("c", "channel"), ("z", "space"),
                                                     ("y", "space"), ("x", "space"))]}]
            data = v.pixels()[None, None]
            array = group.create_array("0", shape=data.shape, chunks=(1, 1, 8, 16, 16), dtype="uint16")
            array[...] = data
            g = ET.SubElement(groups, "zgroup", setup=str(v.setup), timepoint="0")
            ET.SubElement(g, "path").text = group_path
    else:
        raise ValueError(loader)
    return element


def write_filemap_xml(path: Path, views: list[dict], absolute: bool = False) -> Path:
    """A `spimreconstruction.filemap2` project over existing TIFF stacks: each view a dict
    with `setup`, `size` (x, y, z), `file`, `chain` ([(name, 4 × 4 world ← pixel)], in
    ViewTransform order) and optional `attributes` ({"tile": …, "angle": …}); one
    timepoint. File paths are written as given (`absolute`) or relative to the XML."""
    root = ET.Element("SpimData", version="0.2")
    ET.SubElement(root, "BasePath", type="relative").text = "."
    sequence = ET.SubElement(root, "SequenceDescription")
    loader = ET.SubElement(sequence, "ImageLoader", format="spimreconstruction.filemap2")
    files = ET.SubElement(loader, "files")
    setups = ET.SubElement(sequence, "ViewSetups")
    registrations = ET.SubElement(root, "ViewRegistrations")
    for view in views:
        s = ET.SubElement(setups, "ViewSetup")
        ET.SubElement(s, "id").text = str(view["setup"])
        ET.SubElement(s, "size").text = " ".join(map(str, view["size"]))
        attributes = ET.SubElement(s, "attributes")
        for key, value in view.get("attributes", {}).items():
            ET.SubElement(attributes, key).text = str(value)
        mapping = ET.SubElement(files, "FileMapping", view_setup=str(view["setup"]), timepoint="0",
                                series="0", channel="0")
        ET.SubElement(mapping, "file", type="absolute" if absolute else "relative").text = str(view["file"])
        r = ET.SubElement(registrations, "ViewRegistration", timepoint="0", setup=str(view["setup"]))
        for name, m in view["chain"]:
            t = ET.SubElement(r, "ViewTransform", type="affine")
            ET.SubElement(t, "Name").text = name
            ET.SubElement(t, "affine").text = " ".join(repr(float(x)) for x in np.asarray(m)[:3].reshape(12))
    timepoints = ET.SubElement(sequence, "Timepoints", type="pattern")
    ET.SubElement(timepoints, "integerpattern").text = "0"
    ET.ElementTree(root).write(path)
    return path
