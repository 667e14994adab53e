"""Opening a view in a Zarr container: what a missing or foreign group is called."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipelines.errors import TileError
from pipelines.tiles.containers import open_array


def test_a_missing_zarr_group_is_not_found(tmp_path):
    (tmp_path / "views.zarr").mkdir()
    with pytest.raises(TileError, match=r"views\.zarr/view6-gone\.zarr: not found$"):
        open_array("zarr", str(tmp_path / "views.zarr"), "view6-gone.zarr")


def test_a_folder_that_is_no_zarr_names_what_zarr_v2_and_v3_keep(tmp_path):
    (tmp_path / "views.zarr" / "other").mkdir(parents=True)
    (tmp_path / "views.zarr" / "other" / "notes.txt").write_text("not zarr")
    with pytest.raises(TileError, match=r"other: not a Zarr group or array "
                                        r"\(no \.zgroup, \.zarray or zarr\.json\)$"):
        open_array("zarr", str(tmp_path / "views.zarr"), "other")


def test_a_zarr_v2_array_without_attributes_is_read(tmp_path):
    """Only .zarray: the view is the array itself (it was "not a Zarr group or array")."""
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    array = zarr.create_array(str(tmp_path / "views.zarr" / "plain"), shape=data.shape,
                              chunks=(1, 3, 4), dtype="uint16", zarr_format=2)
    array[...] = data
    (tmp_path / "views.zarr" / "plain" / ".zattrs").unlink()   # as tensorstore writes one
    opened = open_array("zarr", str(tmp_path / "views.zarr"), "plain")
    assert tuple(opened.shape) == (2, 3, 4)


@pytest.mark.parametrize("what", ["folder", "not hdf5"])
def test_a_file_that_is_no_hdf5_is_named_in_one_line(tmp_path, what):
    """Trial Z: a project's <hdf5> naming a folder gave h5py's text of several lines (time,
    file descriptor, buffer address); one line, in the system's words or h5py's short ones."""
    from pipelines.tiles.containers import open_hdf5
    path = tmp_path / "dataset.h5"
    if what == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"neither HDF5 nor anything else" * 8)
    with pytest.raises(TileError) as caught:
        open_hdf5(str(path), "t00000/s00/0/cells")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: cannot read as HDF5: ")
    assert ("Is a directory" if what == "folder" else "file signature not found") in message, message
