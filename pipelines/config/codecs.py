"""Which codecs each output format takes, their options and defaults: the one table, read
when the job is loaded (so a codec typo is refused before any input is opened) and by
`pipelines.formats.codecs`, which turns a checked choice into bytes and format JSON.

What each format takes follows FORMATS.md; README's codec table says the same to users
(tests/unit/test_readme.py holds it to `OPTIONS` and `FORMAT_CODECS`).
"""

from __future__ import annotations

import difflib
from typing import Any

from pipelines.config.model import CodecConfig
from pipelines.errors import ConfigError

# an open-ended whole number (blosc's blocksize, in bytes) is a C int inside the codec
WHOLE_NUMBER = range(0, 2**31)

# name → {option: (default, allowed values)}
OPTIONS: dict[str, dict[str, tuple[Any, range | tuple[str, ...]]]] = {
    "raw": {},
    "gzip": {"level": (6, range(1, 10))},
    "zstd": {"level": (3, range(1, 23))},
    "blosc": {
        "cname": ("zstd", ("blosclz", "lz4", "lz4hc", "zlib", "zstd")),
        "clevel": (5, range(0, 10)),
        "shuffle": ("byte", ("none", "byte", "bit")),
        "blocksize": (0, WHOLE_NUMBER),
    },
    "bzip2": {"level": (9, range(1, 10))},
    "xz": {"level": (6, range(0, 10))},
}
FORMAT_CODECS = {
    "n5": ("raw", "gzip", "zstd", "blosc", "bzip2", "xz"),
    "zarr2": ("raw", "gzip", "zstd", "blosc"),
    "zarr3": ("raw", "gzip", "zstd", "blosc"),
}


def codec_options(codec: CodecConfig, fmt: str) -> dict[str, Any]:
    """Every option of `codec` (the defaults filled in), checked against what `fmt` takes;
    a ConfigError naming the key (`output.codec…`) otherwise."""
    if codec.name not in OPTIONS:
        hint = difflib.get_close_matches(codec.name, OPTIONS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"output.codec: unknown codec {codec.name!r}{extra}; "
                          f"{fmt} supports {', '.join(FORMAT_CODECS[fmt])}")
    if codec.name not in FORMAT_CODECS[fmt]:
        raise ConfigError(f"output.codec: {codec.name!r} is not available for format {fmt!r}; "
                          f"{fmt} supports {', '.join(FORMAT_CODECS[fmt])}")
    allowed = OPTIONS[codec.name]
    values = {}
    for key, value in codec.options:
        if key not in allowed:
            known = ", ".join(allowed) or "no options"
            raise ConfigError(f"output.codec: {codec.name} has no option {key!r} ({known})")
        choices = allowed[key][1]
        if isinstance(choices, range):   # a whole number; TOML's true and false are not one
            valid = isinstance(value, int) and not isinstance(value, bool) and value in choices
        else:
            valid = isinstance(value, str) and value in choices
        if not valid:
            raise ConfigError(f"output.codec.{key}: {value!r} is not valid for {codec.name}; "
                              f"expected {_allowed(choices)}")
        values[key] = value
    return {k: values.get(k, default) for k, (default, _) in allowed.items()}


def _allowed(choices: range | tuple[str, ...]) -> str:
    if isinstance(choices, range):
        return f"a whole number from {choices.start} to {choices.stop - 1}"
    return "one of " + ", ".join(f'"{c}"' for c in choices)
