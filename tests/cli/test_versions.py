"""`harmony versions`: the versions every manifest records, as aligned text or JSON."""

from __future__ import annotations

import json

from harmony.cli import main
from harmony.core.manifest import versions


def test_json_lists_what_a_manifest_records(capsys):
    assert main(["versions", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == versions()
    assert printed["pyradiomics_distribution"] == "pyradiomics-bhklab" and printed["pyradiomics"]


def test_text_is_one_aligned_line_per_package(capsys):
    assert main(["versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = versions()
    assert [line.split()[0] for line in lines] == list(expected)
    assert [line.split(maxsplit=1)[1] for line in lines] == list(expected.values())
    width = max(map(len, expected))
    assert all(line[width:width + 2] == "  " and line[width + 2] != " " for line in lines)
