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
