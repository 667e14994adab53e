"""The job configuration as the rest of the package sees it: frozen dataclasses, the
schema of the job file (sections, keys, defaults) and the choices each key allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.config.master import parse_master
from pipelines.storage.s3 import S3Options  # no numpy or boto3 until a store is opened

# The choices a job file allows. Their implementations keep their own tables (formats,
# fusion's blendings, the pyramid's methods), which need numpy; this module must not, so
# tests/unit/config/test_choices.py holds each list equal to what implements it.
FORMATS = ("n5", "zarr2", "zarr3")
LAYOUTS = {"n5": ("n5-viewer", "bdv"), "zarr2": ("ome",), "zarr3": ("ome",)}
BLENDINGS = ("max", "average", "linear", "first", "closest")
# the blendings whose voxels may be values no tile holds (means of the overlapping tiles):
# refused with output.downsample = "mode", which is for labels
MIXING_BLENDINGS = ("average", "linear")
INTERPOLATIONS = ("nearest", "linear")
DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
DOWNSAMPLING = ("mean", "mode")
# output.time_unit: OME-NGFF's time units (UDUNITS-2 names), "" for none
TIME_UNITS = ("", "attosecond", "centisecond", "day", "decisecond", "exasecond", "femtosecond",
              "gigasecond", "hectosecond", "hour", "kilosecond", "megasecond", "microsecond",
              "millisecond", "minute", "nanosecond", "petasecond", "picosecond", "second",
              "terasecond", "yoctosecond", "yottasecond", "zeptosecond", "zettasecond")
RESUME_VERIFY = ("size", "checksum")   # what a resume confirms of the recorded objects

# Every key a job file may hold, with its default (REQUIRED when there is none).
# The [spark] table also takes any Spark property (see `values.parse_spark_conf`); its keys that are
# ours, not Spark's, are SPARK_OWN_KEYS.
REQUIRED = object()
SCHEMA: dict[str, dict[str, Any]] = {
    "input": {"tiles": "", "timepoints": [], "channel_names": [], "views": {}},
    "output": {
        "uri": REQUIRED,
        "format": "",
        "layout": "",
        "chunks": [128, 128, 64],
        "block": [],
        "shard": [],
        "codec": "zstd",
        "dtype": "",
        "levels": 1,
        "downsample": "mean",
        "time_interval": 1.0,
        "time_unit": "",
    },
    "fusion": {"blending": "linear", "interpolation": "nearest", "voxel_size": 1.0,
               "bounding_box": {}, "flatfield": "", "intensity": "none"},
    "stitching": {"enabled": False, "channel": 0, "search": [40, 40, 40],
                  "downsample": [4, 4, 2], "min_overlap": [8, 8, 4], "min_score": 0.5,
                  "max_residual": 2.0, "force": False},
    "resume": {"verify": "size"},
    "limits": {"task_memory": "4GiB", "tile_cache": "256MiB", "checkpoint_seconds": 30},
    "s3": {"endpoint_url": "", "region": "", "profile": "", "max_attempts": 5,
           "request_timeout": 30, "multipart_threshold": "64MiB", "part_size": "16MiB"},
    "spark": {"master": "local[*]", "blocks_per_task": 0},
    "debug": {"fail_blocks": [], "task_delay": 0},
    "flatfield": {"enabled": False, "per_slice": False},
}
SPARK_OWN_KEYS = ("blocks_per_task",)
S3_MIN_PART = 5 * 2**20  # S3 refuses multipart parts below 5 MiB (except the last)
PATH_KEYS = {("input", "tiles"), ("input", "timepoints"), ("output", "uri")}
DEFAULT_BLOCK = (2, 2, 2)


@dataclass(frozen=True)
class CodecConfig:
    """A compressor as the user named it: `name` plus options such as level or cname."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class OutputConfig:
    """[output], checked: the output container and how its arrays are written (see README,
    "Job file")."""

    uri: str
    format: str
    layout: str
    chunks: tuple[int, int, int]
    block: tuple[int, int, int]
    shard: tuple[int, int, int] | None
    codec: CodecConfig
    dtype: str          # "" = the tiles' type
    levels: int | str   # a count, or "auto"
    downsample: str
    time_interval: float = 1.0   # time_unit per timepoint: the OME `t` axis' scale
    time_unit: str = ""          # "" = none


@dataclass(frozen=True)
class StitchingConfig:
    """[stitching]: how tile offsets are measured and solved (see README, "Stitching")."""

    enabled: bool = False
    channel: int | str = 0   # the channel registered: an index, or a project's channel name
                             # (a str only for a project, resolved once it is read)
    search: tuple[int, int, int] = (40, 40, 40)      # max error of a pair's stage offset
    downsample: tuple[int, int, int] = (4, 4, 2)     # binning of the all-offset search
    min_overlap: tuple[int, int, int] = (8, 8, 4)    # voxels a pair must share per axis
    min_score: float = 0.5                           # NCC below which a pair is not used
    max_residual: float = 2.0                        # voxels; worse links are dropped
    force: bool = False          # register again even when the last results still hold


@dataclass(frozen=True)
class JobConfig:
    """A validated job: every value checked, paths resolved, nothing left to default."""

    inputs: tuple[tuple[str, ...], ...]  # tile JSON paths per timepoint, per channel
    channel_names: tuple[str, ...]
    output: OutputConfig
    blending: str
    task_memory: int
    spark_conf: tuple[tuple[str, str], ...]
    interpolation: str = "nearest"
    stitching: StitchingConfig = StitchingConfig()
    fail_blocks: tuple[tuple[int, int, int], ...] = ()
    s3: tuple[tuple[str, Any], ...] = ()  # [s3] settings, sizes in bytes; never credentials
    task_delay: float = 0.0  # test hook: seconds each block waits before it is computed
    blocks_per_task: int = 0  # [spark] blocks_per_task: blocks per executor task (0 = auto)
    tile_cache: int = 256 * 2**20  # [limits] tile_cache: bytes of tile reads kept per process
    checkpoint_seconds: float = 30.0  # [limits]: a task records finished blocks this often
    resume_verify: str = "size"  # [resume] verify: one of RESUME_VERIFY
    views: tuple[tuple[str, tuple[int, ...]], ...] = ()  # input.views: BigStitcher view selection
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)  # fusion.voxel_size, world units
    bounding_box: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # world (min, max)
    flatfield: tuple[str, ...] = ()  # fusion.flatfield: () none, ("auto",), or a folder per channel
    intensity: str = "none"  # fusion.intensity: "none" or "match" (pipelines.illumination)
    estimate_flatfield: bool = False  # [flatfield] enabled: estimate the fields before fusing
    flatfield_per_slice: bool = False  # [flatfield] per_slice: fields that change with depth
    source: str = field(default="", compare=False)

    def s3_options(self):
        """How to reach S3 (the [s3] settings), or None for the defaults."""
        return S3Options(**dict(self.s3)) if self.s3 else None

    @property
    def is_project(self) -> bool:
        """Whether the input is a BigStitcher XML project (not tile JSONs)."""
        return self.tiles.lower().endswith(".xml")

    @property
    def tiles(self) -> str:
        """The first channel's tile JSON of the first timepoint."""
        return self.inputs[0][0]

    @property
    def spark_master(self) -> str:
        return dict(self.spark_conf)["spark.master"]

    @property
    def task_slots(self) -> int | None:
        """How many tasks run at once, where the [spark] settings say: local[N] (and [*]:
        this machine's cores), local-cluster[n, cores, mem], or executor.instances x
        executor.cores; None when the cluster decides (spark-submit, a standalone master)."""
        import os
        if os.environ.get("PYSPARK_GATEWAY_PORT"):  # spark-submit chose the master
            return None
        slots = parse_master(self.spark_master).slots   # the job's master is checked when read
        if slots is not None:
            return slots
        conf = dict(self.spark_conf)
        instances, cores = conf.get("spark.executor.instances"), conf.get("spark.executor.cores")
        if instances and cores and instances.isdigit() and cores.isdigit():
            return int(instances) * int(cores)
        return None
