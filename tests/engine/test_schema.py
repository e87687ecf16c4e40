"""Class schemas: presets, validation errors that teach, lookup and label maps."""

from __future__ import annotations

import copy
import json

import pytest

from engine.errors import InputError
from engine.schema import (
    NODATA_CLASS,
    ClassSchema,
    load_preset,
    load_schema,
    parse_label_map,
    preset_names,
    resolve_schema,
)

GOOD = {
    "name": "mine",
    "version": 1,
    "classes": [
        {"id": 0, "name": "no change", "category": "", "type": "", "color": "#000000"},
        {"id": 1, "name": "road built", "category": "roads", "category_singular": "road", "type": "newly built", "color": "#aa0000"},
        {"id": 2, "name": "tree cut", "category": "trees", "type": "cut", "color": "#00AA00"},
    ],
}


def write(tmp_path, data, name="schema.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def variant(edit) -> dict:
    data = copy.deepcopy(GOOD)
    edit(data)
    return data


def test_presets_load_with_the_paper_classes():
    assert preset_names() == ["building", "gaza", "xbd"]
    gaza = load_preset("gaza")
    assert gaza.num_classes == 7
    assert [(c.id, c.category, c.type) for c in gaza.change_classes] == [
        (1, "buildings", "destroyed"),
        (2, "buildings", "newly built"),
        (3, "refugee camps", "newly established"),
        (4, "agricultural fields", "destroyed"),
        (5, "greenhouses", "destroyed"),
        (6, "greenhouses", "newly built"),
    ]
    building = load_preset("building")
    assert building.is_binary and building[1].singular == "building"
    xbd = load_preset("xbd")
    assert [c.type for c in xbd.change_classes] == ["minor-damaged", "major-damaged", "destroyed"]
    for name in preset_names():
        s = load_preset(name)
        assert s[0].name == "no change" and not s[0].category
        assert all(len(c.rgb()) == 3 for c in s.classes)


def test_good_schema_round_trip(tmp_path):
    s = load_schema(write(tmp_path, GOOD))
    assert s.name == "mine" and s.num_classes == 3
    assert s[1].singular == "road" and s[2].singular == "trees"  # defaults to the category
    assert s[2].color == "#00aa00" and s[2].rgb() == (0, 170, 0)
    again = ClassSchema.from_dict(json.loads(s.to_json()))
    assert again == s
    assert load_schema(write(tmp_path, s.to_json(), "again.json")) == s


def test_id_0_may_be_omitted(tmp_path):
    s = load_schema(write(tmp_path, variant(lambda d: d["classes"].pop(0))))
    assert s.num_classes == 3 and s[0].name == "no change"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["classes"][2].update(id=1), r"duplicate id 1"),
        (lambda d: d["classes"][1].pop("type"), r"class id 1: missing field\(s\) type"),
        (lambda d: d["classes"][2].pop("color"), r"class id 2: missing field\(s\) color"),
        (lambda d: d["classes"][1].pop("id"), r"class #2: missing or non-integer 'id'"),
        (lambda d: d["classes"][1].update(id="1"), r"non-integer 'id'"),
        (lambda d: d["classes"][0].update(name="road"), r"id 0 is reserved for 'no change'"),
        (lambda d: d["classes"][0].update(category="roads"), r"id 0 is reserved"),
        (lambda d: d["classes"][2].update(id=3), r"contiguous from 0; missing id\(s\) \[2\]"),
        (lambda d: d["classes"][2].update(id=255), r"between 1 and 254"),
        (lambda d: d["classes"][2].update(color="green"), r"'color' must look like '#rrggbb', got 'green'"),
        (lambda d: d["classes"][2].update(color="#12345"), r"#rrggbb"),
        (lambda d: d["classes"][2].update(name="Road Built"), r"class name 'Road Built' used by ids 1 and 2"),
        (lambda d: d["classes"][1].update(category=" "), r"'category' must be a non-empty string"),
        (lambda d: d.update(classes=[]), r"'classes' is empty"),
        (lambda d: d.update(classes=[GOOD["classes"][0]]), r"no change class"),
        (lambda d: d.pop("classes"), r"expected a JSON object with a 'classes' list"),
    ],
)
def test_bad_schema_errors_name_the_file_and_the_problem(tmp_path, edit, message):
    path = write(tmp_path, variant(edit))
    with pytest.raises(InputError, match=message) as info:
        load_schema(path)
    assert path in str(info.value)


def test_bad_json_and_missing_file(tmp_path):
    path = write(tmp_path, '{"classes": [ {"id": 1,, } ]}')
    with pytest.raises(InputError, match=r"is not valid JSON: .* line 1, column"):
        load_schema(path)
    with pytest.raises(InputError, match="cannot read schema"):
        load_schema(tmp_path / "nope.json")
    with pytest.raises(InputError, match="unknown preset 'nope'; choose one of building, gaza, xbd"):
        load_preset("nope")


def test_resolve_schema_precedence(tmp_path):
    path = write(tmp_path, GOOD)
    assert resolve_schema("gaza", path).name == "mine"  # --schema wins
    assert resolve_schema("xbd", None).name == "xbd"
    assert resolve_schema(None, None, default="building").name == "building"
    with pytest.raises(InputError, match="--preset NAME or --schema FILE"):
        resolve_schema(None, None)


def test_lookup_by_id_and_name():
    gaza = load_preset("gaza")
    assert gaza.lookup(3) == 3 and gaza.lookup("3") == 3 and gaza.lookup(2.0) == 2
    assert gaza.lookup("Greenhouse Destroyed") == 5
    with pytest.raises(InputError, match=r"label value 'camp' in labels.gpkg is not a class of schema 'gaza'"):
        gaza.lookup("camp", where="labels.gpkg")
    with pytest.raises(InputError):
        gaza.lookup(7)
    with pytest.raises(InputError):
        gaza.lookup(NODATA_CLASS)


def test_parse_label_map():
    assert parse_label_map("255:1") == {255: 1}
    assert parse_label_map(" 255 : 1, 128:2 ,") == {255: 1, 128: 2}
    assert parse_label_map("") == {} and parse_label_map(None) == {}
    for bad in ("255", "a:1", "255:-1", "1:2:3"):
        with pytest.raises(InputError, match="RAW:CLASS"):
            parse_label_map(bad)


@pytest.mark.parametrize("version", ["x", None])
def test_bad_version_is_an_input_error(tmp_path, version):
    with pytest.raises(InputError, match="version"):
        load_schema(write(tmp_path, variant(lambda d: d.update(version=version))))
