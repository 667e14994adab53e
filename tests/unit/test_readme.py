"""README's tables of the job file and its codecs against the tables the code reads:
a key or codec added in one place and not the other fails here (trial R: the codec
table was written three times, and nothing held README to the code)."""

from __future__ import annotations

import re

import pytest

from pipelines.config.codecs import FORMAT_CODECS, OPTIONS
from pipelines.config.model import SCHEMA
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def table_rows(after: str) -> dict[str, str]:
    """The rows of the first Markdown table after the line starting with `after`, by
    their first cell's code name."""
    lines = README[README.index("\n" + after):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1].strip()
        for name in re.findall(r"`([^`]+)`", first):
            rows[name] = line
    return rows


def test_every_job_file_key_has_a_row_in_the_readme():
    rows = table_rows("Every key, its default, and what it does.")
    keys = [f"{section}.{key}" for section, table in SCHEMA.items() for key in table]
    assert [key for key in keys if key not in rows] == []
    assert [name for name in rows if name not in keys and not name.startswith("spark.")] == []


@pytest.mark.parametrize("name", OPTIONS)
def test_every_codec_has_its_formats_options_and_defaults_in_the_readme(name):
    row = table_rows("Codecs and their options")[name]
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    formats = [f for f, codecs in FORMAT_CODECS.items() if name in codecs]
    assert cells[1] == ("all" if len(formats) == len(FORMAT_CODECS) else ", ".join(formats)), row
    for option, (default, allowed) in OPTIONS[name].items():
        assert f"`{option}` ({default}" in cells[2] or f"`{option}` (`{default}`" in cells[2], (option, row)
        if isinstance(allowed, range) and allowed.stop < 2**31:
            assert f"{allowed.start}–{allowed.stop - 1}" in cells[2], (option, row)
        elif isinstance(allowed, tuple):
            assert all(f"`{value}`" in cells[2] for value in allowed), (option, row)
    if not OPTIONS[name]:
        assert cells[2] == "—", row


def test_every_module_is_in_the_readmes_map_of_the_package():
    """README's "folder / module" table names every module in its folder's row (trial R:
    eleven were missing)."""
    rows = README[README.index("| folder / module |"):].split("\n\n")[0].splitlines()[2:]
    missing = []
    for module in sorted((ROOT / "pipelines").rglob("*.py")):
        relative = module.relative_to(ROOT / "pipelines")
        if module.name == "__init__.py":
            continue
        folder = f"`{relative.parts[0]}/`" if len(relative.parts) > 1 else f"`{module.name}`"
        row = next((r for r in rows if folder in r.split("|")[1]), "")
        if not row or len(relative.parts) > 1 and f"`{module.name}`" not in row:
            missing.append(relative.as_posix())
    assert missing == [], missing
