"""moto_adapters.indefinite_paths_as_lists: as with Jayway JsonPath (what Step Functions evaluates
JSONPath with), an indefinite path is the list of its matches, [] or one element included; a definite
path that matches nothing is an error."""

from __future__ import annotations

import contextlib

import pytest
from moto.stepfunctions.parser.asl.component.common.string import string_expression
from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError, extract_json

from routing_manager.local import moto_adapters

DATA = {"tens": [{"lost": []}, {"lost": []}], "nested": [[], []], "items": [{"s": False}],
        "outcomes": [{"counted": {"failed": 1}}, {"counted": {"routed": 1}}]}
INDEFINITE = ["$.tens[*].lost[*]", "$.nested[*][*]", "$.items[?(@.s == true)]", "$..missing", "$.items[1:]"]


def test_without_the_adapter_moto_fails_empty_matches_and_unwraps_a_single_one() -> None:
    for path in ("$.tens[*].lost[*]", "$.nested[*][*]", "$.items[?(@.s == true)]"):
        with pytest.raises(NoSuchJsonPathError):
            extract_json(path, DATA)
    assert extract_json("$.outcomes[*].counted.failed", DATA) == 1


def test_with_it_they_are_empty_and_a_definite_path_still_fails() -> None:
    with contextlib.ExitStack() as patches:
        moto_adapters.indefinite_paths_as_lists(patches)
        read = string_expression.extract_json  # as the interpreter reads a `.$` field
        assert [read(path, DATA) for path in INDEFINITE] == [[]] * len(INDEFINITE)
        assert read("$.tens[*].lost", DATA) == [[], []]
        assert read("$.outcomes[*].counted.failed", DATA) == [1]
        for definite in ("$.missing", "$.items[0].e", "$.tens[3]"):
            with pytest.raises(NoSuchJsonPathError):
                read(definite, DATA)
