"""Job files: defaults, overrides typed as a user would, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.config import CodecConfig, apply_override, load_job, parse_size
from pipelines.errors import ConfigError

MINIMAL = '[input]\ntiles = "tiles.json"\n[output]\nuri = "out/volume"\n'


def job(tmp_path: Path, text: str = MINIMAL) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_the_dataclasses_defaults_are_the_job_files_defaults(tmp_path):
    """JobConfig and StitchingConfig keep defaults (for code that builds them directly,
    tests and benchmarks) beside the job file's (config.model.SCHEMA): a job that sets
    nothing must get the same values either way, or a setting would mean one thing in a
    job file and another in code."""
    import dataclasses

    from pipelines.config import JobConfig, StitchingConfig
    from pipelines.storage.s3 import S3Options
    config = load_job(job(tmp_path))
    assert config.stitching == StitchingConfig()
    assert S3Options(**dict(config.s3)) == S3Options()   # JobConfig's () means S3Options()
    for f in dataclasses.fields(JobConfig):
        if f.default is not dataclasses.MISSING and f.name not in ("source", "s3"):
            assert getattr(config, f.name) == f.default, f.name


def test_defaults_and_paths_relative_to_the_job_file(tmp_path):
    config = load_job(job(tmp_path))
    assert config.tiles == str(tmp_path / "tiles.json")
    assert config.output.uri == str(tmp_path / "out/volume")
    assert config.output.format == "n5" and config.output.layout == "n5-viewer"
    assert config.output.chunks == (128, 128, 64) and config.output.block == (2, 2, 2)
    assert config.output.levels == 1 and config.output.shard is None and config.output.dtype == ""
    assert config.output.codec == CodecConfig("zstd") and config.blending == "linear"
    assert config.spark_master == "local[*]"


def test_overrides_are_read_as_toml_values_or_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_job(job(tmp_path), [
        "output.format=zarr3", "output.chunks=[64, 32, 16]", "output.uri=elsewhere/v.zarr",
        "spark.executor.memory=4g", "output.codec={name='blosc', cname='lz4'}",
        "spark.master=local[2]",
    ])
    assert config.output.format == "zarr3" and config.output.layout == "ome"
    assert config.output.chunks == (64, 32, 16)
    assert config.output.uri == str(tmp_path / "elsewhere/v.zarr")
    assert dict(config.spark_conf)["spark.executor.memory"] == "4g"
    assert config.output.codec == CodecConfig("blosc", (("cname", "lz4"),))
    assert config.spark_master == "local[2]"


def test_spark_table_takes_nested_and_quoted_properties(tmp_path):
    text = MINIMAL + '[spark]\nmaster = "local[1]"\nexecutor.memory = "2g"\n"spark.task.maxFailures" = 4\n'
    conf = dict(load_job(job(tmp_path, text)).spark_conf)
    assert conf == {"spark.master": "local[1]", "spark.executor.memory": "2g",
                    "spark.task.maxFailures": "4"}


@pytest.mark.parametrize("text,message", [
    (MINIMAL + "[output2]\n", r"unknown section \[output2\]; did you mean \[output\]\?"),
    ('[input]\ntiles = "t.json"\n[output]\nformat = "n5"\n', "missing required key output.uri"),
    (MINIMAL + "[fusion]\nblendng = 'max'\n", "unknown key fusion.blendng; did you mean 'fusion.blending'"),
    (MINIMAL + "[fusion]\nblending = 'maximum'\n", r"fusion.blending: expected one of .* \(did you mean 'max'\?\)"),
    (MINIMAL.replace("[output]", "[output]\nformat = 'hdf5'"), "output.format: expected one of n5, zarr2, zarr3"),
    (MINIMAL.replace("[output]", "[output]\nchunks = [64, 0, 64]"), r"output.chunks: expected three positive"),
    (MINIMAL.replace("[output]", "[output]\nblock = [2, 2]"), r"output.block: expected three positive"),
    (MINIMAL.replace("[output]", "[output]\nblock = [-1, 2, 2]"), r"output.block: expected three positive"),
    (MINIMAL.replace("[output]", "[output]\ncodec = 5"), "output.codec: expected a name"),
    ("[input\n", "not valid TOML"),
    (MINIMAL + "[limits]\ntask_memory = 'lots'\n", "limits.task_memory: expected a size"),
    # sizes that are well written but out of range say the range (they said "expected a
    # size such as", as if misspelled)
    (MINIMAL + "[limits]\ntask_memory = '2PiB'\n", "limits.task_memory: expected a size from 1 byte to 1PiB"),
    (MINIMAL + "[limits]\ntask_memory = 0\n", "limits.task_memory: expected a size from 1 byte to 1PiB"),
    (MINIMAL + "[limits]\ntask_memory = '-2GiB'\n", "limits.task_memory: expected a size from 1 byte to 1PiB"),
    # trial V: the time between timepoints, which only OME-Zarr's t axis records
    (MINIMAL.replace("[output]", "[output]\ntime_interval = 0"), "output.time_interval: expected a number above 0"),
    (MINIMAL.replace("[output]", "[output]\ntime_unit = 'sec'"), r"output.time_unit: expected one of '', attosecond, .*second"),
    (MINIMAL.replace("[output]", "[output]\ntime_unit = 'second'\nformat = 'n5'"),
     "output.time_unit: only the ome layout records"),
])
def test_bad_job_files_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_job(job(tmp_path, text))


@pytest.mark.parametrize("override,fmt,layout", [
    ([], "n5", "n5-viewer"), (["output.layout=bdv"], "n5", "bdv"),
    (["output.shard=[2,2,2]"], "zarr3", "ome"), (["output.layout=ome"], "zarr3", "ome"),
    (["output.format=zarr2"], "zarr2", "ome"),
    (["output.uri=out/v.zarr"], "zarr3", "ome"), (["output.uri=s3://b/V.ZARR/"], "zarr3", "ome"),
    (["output.uri=out/v.zarr", "output.format=zarr2"], "zarr2", "ome"),
    (["output.uri=out/v.n5"], "n5", "n5-viewer"),
])
def test_one_key_switches_the_kind_of_output(tmp_path, override, fmt, layout):
    output = load_job(job(tmp_path), override).output
    assert (output.format, output.layout) == (fmt, layout)


@pytest.mark.parametrize("override,message", [
    (["output.uri=out/v.zarr", "output.format=n5"],
     "is named .zarr but output.format is 'n5'; name it .n5, or set output.format to zarr2 or zarr3"),
    (["output.uri=out/v.n5", "output.format=zarr3"],
     "is named .n5 but output.format is 'zarr3'; name it .zarr, or set output.format to n5"),
    (["output.uri=out/v.n5", "output.shard=[2,2,2]"],
     "is named .n5 but the format is 'zarr3' (output.shard is set); name it .zarr, or leave "
     "output.shard out (sharding is Zarr v3's)"),
    # trial AF: a format the user never set was blamed as output.format
    (["output.uri=out/v.n5", "output.layout=ome"],
     "is named .n5 but the format is 'zarr3' (output.layout is \"ome\"); name it .zarr, or "
     "choose an N5 layout (n5-viewer, bdv)"),
])
def test_an_output_named_for_another_format_is_refused(tmp_path, override, message):
    """Viewers and readers go by a container's name: a `.zarr` folder of N5 (the default
    format once) opens as an empty Zarr."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_job(job(tmp_path), override)


@pytest.mark.parametrize("overrides,message", [
    (["output.format=n5", "output.shard=[2,2,2]"], "sharding needs format"),
    (["output.format=zarr2", "output.layout=bdv"],
     "output.layout 'bdv' is a layout of n5, but output.format is 'zarr2'; its layouts: ome"),
    (["output.uri=out/v.zarr", "output.layout=bdv"],   # trial AF: said "expected one of ome"
     r"output.layout 'bdv' is a layout of n5, but the format is 'zarr3' \(the output is named .zarr\)"),
    (["output.layout=Bdv"], "output.layout: expected one of n5-viewer, bdv, found 'Bdv'"),
    (["output.levels=2.5"], "output.levels: expected an integer ≥ 1"),
    (["output.shard=[2,2,2]", "output.block=[3,2,2]"], "whole number of shards"),
    (["output.levels=0"], "output.levels"),
    (["output.dtype=uint12"], "output.dtype: expected one of"),
    # trial AI: a hint by spelling named a type of another range ('uint16' for uint64)
    (["output.dtype=uint64"], r"^--set output.dtype: 'uint64' is not offered; expected one of uint8, [^(]*$"),
    (["output.dtype=float16"], r"^--set output.dtype: 'float16' is not offered; expected one of [^(]*$"),
    (["output.downsample=median"], "output.downsample"),
    (["output.downsample=mode", "fusion.blending=linear"],
     'values between labels; with output.downsample = "mode" set fusion.blending = "max", "first" or "closest"'),
    (["output.downsample=mode"], r"'linear' \(the default\) averages"),   # trial S
    (["output.downsample=mode", "fusion.blending=average"], "'average' averages"),
    # trial AR: linear resampling (sub-voxel positions, affines) invented 201 ids; gains and
    # fields would renumber them
    (["output.downsample=mode", "fusion.blending=max", "fusion.interpolation=linear"],
     r"fusion.interpolation: 'linear' resamples tiles between their pixels, which invents values "
     r'between labels; with output.downsample = "mode" set fusion.interpolation = "nearest"'),
    (["output.downsample=mode", "fusion.blending=max", 'fusion.intensity="match"'],
     "fusion.intensity: 'match' scales each tile's values, which renumbers labels"),
    (["output.downsample=mode", "fusion.blending=max", 'fusion.flatfield="auto"'],
     "fusion.flatfield: a flatfield correction changes each pixel's value, which renumbers labels"),
    (["output.downsample=mode", "fusion.blending=max", "flatfield.enabled=true"],
     r"^--set flatfield.enabled: a flatfield correction .* which renumbers labels"),   # trial AU
    (["input.timepoints=[['a.json']]"], "exactly one of .*; both are set"),
    (["input.tiles=[]"], "input.tiles is empty: give a tile JSON"),
])
def test_inconsistent_output_options(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_job(job(tmp_path), overrides)


@pytest.mark.parametrize("blending", ["max", "first", "closest"])
def test_labels_take_the_blendings_that_keep_one_tiles_value(tmp_path, blending):
    config = load_job(job(tmp_path), ["output.downsample=mode", f"fusion.blending={blending}"])
    assert (config.output.downsample, config.blending) == ("mode", blending)


def test_timepoints_and_channels(tmp_path):
    text = '[input]\ntimepoints = [["a.json", "b.json"], ["c.json", "d.json"]]\n' \
           'channel_names = ["GFP", "RFP"]\n[output]\nuri = "o.n5"\nlayout = "bdv"\n'
    config = load_job(job(tmp_path, text))
    assert config.inputs == tuple(tuple(str(tmp_path / f"{n}.json") for n in pair)
                                  for pair in (("a", "b"), ("c", "d")))
    assert config.channel_names == ("GFP", "RFP")
    with pytest.raises(ConfigError, match="n5-viewer layout holds one timepoint"):
        load_job(job(tmp_path, text.replace('layout = "bdv"', "")))
    # trial I: tile-stitch and tile-flatfield write no output, so its layout is no reason
    # to refuse their job (the export still refuses it)
    no_layout = load_job(job(tmp_path, text.replace('layout = "bdv"', "")), writes_output=False)
    assert len(no_layout.inputs) == 2


def test_a_timepoint_listing_its_channels_in_another_order_is_refused(tmp_path):
    """Trial I: timepoint 1's ch1 was fused into channel 0's arrays, corrected with channel
    0's fields and coefficients, without a word."""
    text = ('[input]\ntimepoints = [["t0/ch0.json", "t0/ch1.json"], ["t1/ch1.json", "t1/ch0.json"]]\n'
            '[output]\nuri = "o.n5"\nlayout = "bdv"\n')
    with pytest.raises(ConfigError, match=r"input.timepoints: timepoint 1 lists its channels in "
                                          r"another order than timepoint 0 \(by file name: ch1, ch0 "
                                          r"against ch0, ch1\)"):
        load_job(job(tmp_path, text))
    load_job(job(tmp_path, text.replace('"t1/ch1.json", "t1/ch0.json"', '"t1/ch0.json", "t1/ch1.json"')))


@pytest.mark.parametrize("inputs, message", [
    ('tiles = ["a.json", "a.json"]', "input.tiles: {a} is listed twice (channel 0 and channel 1)"),
    ('timepoints = [["a.json", "b.json"], ["c.json", "a.json"]]',
     "input.timepoints: {a} is listed twice (timepoint 0, channel 0 and timepoint 1, channel 1)"),
    ('timepoints = [["a.json"], ["a.json"]]',
     "input.timepoints: {a} is listed twice (timepoint 0, channel 0 and timepoint 1, channel 0)"),
    ('tiles = ["a.json", "b.json"]\nchannel_names = ["RFP", "RFP"]',
     "input.channel_names: 'RFP' names two channels"),
])
def test_a_tile_json_or_a_channel_name_given_twice_is_refused(tmp_path, inputs, message):
    """Trial V: the same JSON as two channels (or timepoints) was exported twice without a
    word, and with two channels named "RFP", stitching.channel = "RFP" meant the first."""
    text = f'[input]\n{inputs}\n[output]\nuri = "o.n5"\nlayout = "bdv"\n'
    with pytest.raises(ConfigError, match=re.escape(message.format(a=tmp_path / "a.json"))):
        load_job(job(tmp_path, text))


@pytest.mark.parametrize("paths, names", [
    (("a/ch0.json", "a/ch1.json"), ("ch0", "ch1")),
    (("c0/tiles.json", "c1/tiles.json"), ("c0", "c1")),   # trial I: were 'tiles', 'tiles'
    (("x/tiles.json", "x/tiles.json"), ("channel 0", "channel 1")),
])
def test_default_channel_names_are_unique(paths, names):
    from pipelines.config.inputs import default_channel_names
    assert default_channel_names(paths) == names


def test_one_channel_name_for_two_channels_is_said_in_good_english(tmp_path):
    text = '[input]\ntiles = ["a.json", "b.json"]\nchannel_names = ["GFP"]\n[output]\nuri = "o.n5"\n'
    with pytest.raises(ConfigError, match="input.channel_names: 1 name for 2 channels"):
        load_job(job(tmp_path, text))


def test_missing_job_file(tmp_path):
    with pytest.raises(ConfigError, match="job file not found"):
        load_job(tmp_path / "nope.toml")


@pytest.mark.parametrize("item", ["output.format", "format=n5", ".x=1", "output.=1"])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_override({}, item)


def test_unknown_override_key_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'output.format'"):
        load_job(job(tmp_path), ["output.fromat=zarr3"])


@pytest.mark.parametrize("text,expected", [("4GiB", 4 * 2**30), ("512m", 512 * 2**20),
                                           ("1.5g", 3 * 2**29), (1000, 1000), ("2 GB", 2 * 2**30)])
def test_parse_size(text, expected):
    assert parse_size(text, "x") == expected


@pytest.mark.parametrize("text,message", [
    (MINIMAL + "[spark]\nmastr = 'local[2]'\n", "spark.mastr: unknown Spark property; did you mean 'spark.master'"),
    (MINIMAL + "[spark]\nmaster = 2\n", "spark.master: expected a string"),
])
def test_spark_table_mistakes(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_job(job(tmp_path, text))


def test_override_values_as_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_job(job(tmp_path), ["fusion.blending = max", "output.uri=2024-05-01",
                                      "output.codec={ name = 'gzip', level = 4 }"])
    assert config.blending == "max" and config.output.uri == str(tmp_path / "2024-05-01")
    assert config.output.codec == CodecConfig("gzip", (("level", 4),))


def test_paths_home_and_file_uris(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_job(job(tmp_path), ["output.uri=~/v.n5"]).output.uri == str(tmp_path / "home/v.n5")
    assert load_job(job(tmp_path), ["output.uri=file:///data/v.n5"]).output.uri == "/data/v.n5"
    assert load_job(job(tmp_path), ["output.uri=file://localhost/data/v.n5"]).output.uri == "/data/v.n5"
    with pytest.raises(ConfigError, match="not host 'out'"):
        load_job(job(tmp_path), ["output.uri=file://out/v.n5"])
    # a URI's path is percent-encoded; a file: URI without // would become a folder "file:rel"
    assert load_job(job(tmp_path), ["output.uri=file:///data/my%20run/v.n5"]).output.uri == "/data/my run/v.n5"
    with pytest.raises(ConfigError, match="--set output.uri: file:rel/v.n5: a file URI names an absolute path"):
        load_job(job(tmp_path), ["output.uri=file:rel/v.n5"])


@pytest.mark.parametrize("uri, message", [
    ("/", "'/' is a root folder or a bucket; name the container inside it, e.g. /volume"),
    ("s3://", "'s3://' names no bucket"),
    ("s3://bucket", "'s3://bucket' is a root folder or a bucket"),
    ("s3://bucket/", "is a root folder or a bucket"),
])
def test_an_output_that_is_a_root_or_a_bucket_is_refused_before_planning(tmp_path, uri, message):
    """The dry run checks these too: the real run would refuse them only at the store."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_job(job(tmp_path), [f"output.uri={uri}"])


@pytest.mark.parametrize("sets, slots", [
    (["spark.master=local"], 1), (["spark.master=local[3]"], 3), (["spark.master=local[2,4]"], 2),
    (["spark.master=local-cluster[2,3,1024]"], 6), (["spark.master=spark://h:7077"], None),
    (["spark.master=yarn", "spark.executor.instances=10", "spark.executor.cores=4"], 40),
])
def test_task_slots_come_from_the_spark_settings(tmp_path, sets, slots, monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert load_job(job(tmp_path), sets).task_slots == slots


def test_our_own_spark_and_limits_keys_are_checked_and_never_reach_spark(tmp_path):
    config = load_job(job(tmp_path), ["spark.blocks_per_task=64", "limits.tile_cache=0",
                                      "limits.checkpoint_seconds=5"])
    assert (config.blocks_per_task, config.tile_cache, config.checkpoint_seconds) == (64, 0, 5.0)
    assert "spark.blocks_per_task" not in dict(config.spark_conf)
    for bad, key in (("spark.blocks_per_task=-1", "spark.blocks_per_task"),
                     ("spark.blocks_per_task=2.5", "spark.blocks_per_task"),
                     ("limits.checkpoint_seconds=nan", "limits.checkpoint_seconds"),
                     ("limits.checkpoint_seconds=inf", "limits.checkpoint_seconds"),
                     ("limits.tile_cache=\"lots\"", "limits.tile_cache")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_job(job(tmp_path), [bad])


def test_an_endpoint_without_its_scheme_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"s3.endpoint_url: expected http://host:port .*'127.0.0.1:5731'"):
        load_job(job(tmp_path), ["s3.endpoint_url=127.0.0.1:5731"])
    assert dict(load_job(job(tmp_path), ["s3.endpoint_url=http://127.0.0.1:5731"]).s3)["endpoint_url"] == \
        "http://127.0.0.1:5731"


@pytest.mark.parametrize("override,message", [
    ("stitching.search=-1", "--set stitching.search: expected an integer"),
    ("limits.task_memory=0", "--set limits.task_memory: expected a size from 1 byte"),
    ("spark.master=local[2", "--set spark.master = 'local[2': expected local[N]"),
    # sub-keys of a table set on the command line, and a misspelt Spark property
    ('output.codec={name="zstd", level=99}', "--set output.codec.level: 99 is not valid for zstd"),
    ("fusion.bounding_box={min=[0,0,'a'], max=[1,1,1]}", "--set fusion.bounding_box.min: expected"),
    ("spark.mastr=local", "--set spark.mastr: unknown Spark property; did you mean 'spark.master'"),
    # trial X: a message about two keys, the second of them given on the command line
    ("output.time_unit=second", "--set output.time_unit: only the ome layout"),
])
def test_a_bad_value_from_the_command_line_names_set_not_the_job_file(tmp_path, override, message):
    """Defect (a user's trial): `--set stitching.search=-1` was blamed on the job file,
    whose own value was fine; a bad value in the file still names the file."""
    path = job(tmp_path, MINIMAL + "[stitching]\nsearch = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_job(path, [override])
    assert str(caught.value).startswith(message), caught.value
    path = job(tmp_path, MINIMAL + "[stitching]\nsearch = -1\n")
    with pytest.raises(ConfigError, match=f"^{path}: stitching.search: expected"):
        load_job(path, ["stitching.enabled=true"])


def test_a_misspelt_view_attribute_gets_a_hint():
    from pipelines.config.inputs import parse_views
    with pytest.raises(ConfigError, match=r"input.views.angel: unknown attribute \(did you mean 'angle'\?\)"):
        parse_views({"angel": [0]}, "")


@pytest.mark.parametrize("codec,message", [
    ('"zstdd"', "output.codec: unknown codec 'zstdd' (did you mean 'zstd'?)"),
    ('"xz"\nformat = "zarr3"', "output.codec: 'xz' is not available for format 'zarr3'"),
    ('{name = "blosc", blocksize = "x"}', "output.codec.blocksize: 'x' is not valid for blosc; "
                                          "expected a whole number from 0 to 2147483647"),
    ('{name = "blosc", blocksize = [1]}', "output.codec.blocksize: [1] is not valid"),
    ('{name = "gzip", level = true}', "output.codec.level: True is not valid for gzip; "
                                      "expected a whole number from 1 to 9"),
    ('{name = "blosc", cname = 5}', "output.codec.cname: 5 is not valid for blosc; expected one "
                                    'of "blosclz", "lz4"'),
])
def test_the_codec_is_checked_when_the_job_is_read(tmp_path, codec, message):
    """Defects (review, audit): a codec typo was found only while planning, after every tile
    file had been opened (here tiles.json does not even exist), and a text blocksize was a
    TypeError traceback."""
    path = job(tmp_path, MINIMAL + f"codec = {codec}\n")
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    assert str(caught.value).startswith(f"{path}: {message}"), caught.value


@pytest.mark.parametrize("given,expected", [("0", 0), ('"0MiB"', 0), ('"256MiB"', 256 * 2**20),
                                            ('"0.5"', None), ("-1", None)])
def test_the_tile_cache_is_off_at_any_zero_and_its_error_says_so(tmp_path, given, expected):
    """Defect (audit): "0MiB" was refused and the message said sizes start at 1 byte,
    though 0 turns the cache off."""
    if expected is not None:
        assert load_job(job(tmp_path), [f"limits.tile_cache={given}"]).tile_cache == expected
        return
    with pytest.raises(ConfigError, match=r"limits.tile_cache: expected 0 \(off\) or a size"):
        load_job(job(tmp_path), [f"limits.tile_cache={given}"])


@pytest.mark.parametrize("text, message", [
    ("timepoints = []", "input.timepoints is empty: give a list of timepoints"),
    ('tiles = ""', "input.tiles is empty: give a tile JSON"),
    ("tiles = []", "input.tiles is empty: give a tile JSON"),
])
def test_an_empty_input_is_said_to_be_empty(tmp_path, text, message):
    """Trial I: `timepoints = []` said "give exactly one of input.tiles and
    input.timepoints; neither is set"."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_job(job(tmp_path, f'[input]\n{text}\n[output]\nuri = "o.n5"\n'))


def test_a_flatfield_folder_given_with_set_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    """README, Overrides: relative paths given with --set are relative to the current
    folder; fusion.flatfield's was taken from the job file's (trial S). In the file, the
    job file's folder; "auto" stays "auto"."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "here").mkdir()
    path = job(tmp_path / "jobs", MINIMAL + '\n[fusion]\nflatfield = "in-file"\n')
    monkeypatch.chdir(tmp_path / "here")
    assert load_job(path).flatfield == (str(tmp_path / "jobs" / "in-file"),)
    assert load_job(path, ["fusion.flatfield=ff"]).flatfield == (str(tmp_path / "here" / "ff"),)
    assert load_job(path, ["fusion.flatfield=auto"]).flatfield == ("auto",)
    # review J: lists mean what they mean in the file, and file:// is a path
    assert load_job(path, ['fusion.flatfield=["auto"]']).flatfield == ("auto",)
    assert load_job(path, ['fusion.flatfield=[""]']).flatfield == ()
    assert load_job(path, [f"fusion.flatfield=file://{tmp_path}/ff"]).flatfield == (str(tmp_path / "ff"),)
