"""Spark pipelines that fuse microscope tile acquisitions into chunked N5 and Zarr volumes."""

__version__ = "0.1.0"
