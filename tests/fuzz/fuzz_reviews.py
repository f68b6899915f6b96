"""Coverage-guided fuzzing (atheris, libFuzzer) of review decoding and both admission cores: ``make fuzz``.

Each input is sent, as an AdmissionReview body, through the pod and the GitRepository endpoints' decode and
review functions (``tests.support.fuzzing.check_body``): anything but the typed 400 (``BadReview``), a denial
(``PodRejected``) or an answer is a crash, and so is a second pass that patches again. The seed corpus is
tests/fuzz/corpus (realistic reviews); new inputs go to the directory ``make fuzz`` names first.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["webhook", "common", "tests.support.fuzzing"]):
    from tests.support.fuzzing import check_body


def test_one_input(data: bytes) -> None:
    check_body(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
