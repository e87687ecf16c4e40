"""The S2M captioner (paper section 3.1, Table 1): quadruples, thresholds, templates."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest

from engine.captions import (
    CENTER_TEMPLATE,
    DIRECTIONS,
    ELEMENTS,
    NO_LOCATION_TEMPLATES,
    QUANTITIES,
    TEMPLATES,
    Quadruple,
    apply_label_map,
    caption_chip,
    caption_raster_windows,
    chip_windows,
    direction_of,
    quadruples,
    quantity_of,
    render,
    resolution_scale,
)
from engine.errors import InputError
from engine.schema import NODATA_CLASS, load_preset

SENTENCE = re.compile(r"^[A-Z][^.]*[a-z]\.$")  # capital first, exactly one final period


@pytest.fixture(scope="module")
def gaza():
    return load_preset("gaza")


@pytest.fixture(scope="module")
def building():
    return load_preset("building")


def first_pixels(n: int, h: int, w: int, cls: int = 1) -> np.ndarray:
    """A chip whose first ``n`` pixels in raster order hold ``cls``."""
    label = np.zeros(h * w, np.uint8)
    label[:n] = cls
    return label.reshape(h, w)


# ----------------------------------------------------------------------------- direction

# Block of 10x10 pixels at the centre of each cell of a 3x3 grid on a 90x90 chip.
@pytest.mark.parametrize(
    "cell_row, cell_col, expected",
    [
        (0, 0, "northwest"), (0, 1, "north"), (0, 2, "northeast"),
        (1, 0, "west"), (1, 1, "center"), (1, 2, "east"),
        (2, 0, "southwest"), (2, 1, "south"), (2, 2, "southeast"),
    ],
)  # fmt: skip
def test_every_direction(building, cell_row, cell_col, expected):
    label = np.zeros((90, 90), np.uint8)
    r, c = cell_row * 30 + 10, cell_col * 30 + 10
    label[r : r + 10, c : c + 10] = 1
    (q,) = quadruples(label, building)
    assert q.direction == expected
    assert expected in DIRECTIONS


def test_direction_grid_boundaries_use_0_based_centroid(building):
    # H = W = 9: row 3 == H/3 is already centre, row 6 == 2H/3 already south.
    for row, expected in ((2, "north"), (3, "center"), (5, "center"), (6, "south")):
        label = np.zeros((9, 9), np.uint8)
        label[row, 4] = 1
        assert quadruples(label, building)[0].direction == expected, row
    for col, expected in ((2, "west"), (3, "center"), (5, "center"), (6, "east")):
        label = np.zeros((9, 9), np.uint8)
        label[4, col] = 1
        assert quadruples(label, building)[0].direction == expected, col
    assert direction_of(170.66, 0, 512, 512) == "northwest"  # 512/3 = 170.67
    assert direction_of(170.67, 0, 512, 512) == "west"
    assert direction_of(341.33, 511, 512, 512) == "east"  # 2*512/3 = 341.33
    assert direction_of(341.34, 511, 512, 512) == "southeast"


def test_direction_is_the_centroid_not_the_bulk(building):
    # Two blobs, north-west and south-east corners: the centroid is in the centre.
    label = np.zeros((60, 60), np.uint8)
    label[:5, :5] = 1
    label[-5:, -5:] = 1
    assert quadruples(label, building)[0].direction == "center"


# ----------------------------------------------------------------------------- quantity


@pytest.mark.parametrize(
    "pixels, expected",
    [(1, "a single"), (799, "a single"), (800, "a few"), (3999, "a few"), (4000, "several"),
     (7999, "several"), (8000, "multiple"), (512 * 512, "multiple")],
)  # fmt: skip
def test_quantity_boundaries_on_512_chip(building, pixels, expected):
    (q,) = quadruples(first_pixels(pixels, 512, 512), building)
    assert q.pixels == pixels
    assert q.quantity == expected


@pytest.mark.parametrize("side", [256, 512])
@pytest.mark.parametrize(
    "pixels, expected",
    [(500, "a single"), (799, "a single"), (800, "a few"), (3999, "a few"), (4000, "several"),
     (7999, "several"), (8000, "multiple")],
)  # fmt: skip
def test_quantity_thresholds_are_pixels_whatever_the_chip_size(building, side, pixels, expected):
    # Eq. 3 counts pixels of the change mask: a 256x256 chip has the 512x512 thresholds.
    (q,) = quadruples(first_pixels(pixels, side, side), building)
    assert (q.pixels, q.quantity) == (pixels, expected)


def test_quantity_of_has_no_chip_size():
    assert [quantity_of(n) for n in (0, 799, 800, 3999, 4000, 7999, 8000, 10**7)] == [
        "a single", "a single", "a few", "a few", "several", "several", "multiple", "multiple"
    ]  # fmt: skip
    with pytest.raises(TypeError):
        quantity_of(800, 256, 256)  # the old (pixels, height, width) form fails loudly
    with pytest.raises(TypeError):
        quantity_of(800, 0.25)  # scale is keyword-only: a stray height is no silent scale


def test_quantity_scale_multiplies_the_thresholds(building):
    assert quantity_of(500) == "a single" and quantity_of(500, scale=0.25) == "a few"
    assert [quantity_of(n, scale=0.25) for n in (199, 200, 999, 1000, 1999, 2000)] == [
        "a single", "a few", "a few", "several", "several", "multiple"
    ]  # fmt: skip
    assert quantity_of(8000, scale=2.0) == "several" and quantity_of(16000, scale=2.0) == "multiple"
    (q,) = quadruples(first_pixels(500, 256, 256), building, quantity_scale=0.25)
    assert (q.quantity, q.category) == ("a few", "buildings")
    quads, sentences = caption_chip(first_pixels(500, 256, 256), building, template=0, quantity_scale=0.25)
    assert quads == [q] and "a few changed buildings" in sentences[0]
    for bad in (0, -1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(InputError, match="quantity scale"):
            quantity_of(10, scale=bad)
    with pytest.raises(InputError, match="quantity scale"):
        quadruples(first_pixels(5, 8, 8), building, quantity_scale=0)


def test_resolution_scale():
    assert resolution_scale(0.5) == 1.0
    assert resolution_scale(1.0) == 0.25  # 4x fewer pixels per object: thresholds / 4
    assert resolution_scale(0.25) == 4.0
    assert resolution_scale(2.0, reference_m=1.0) == 0.25
    assert quantity_of(200, scale=resolution_scale(1.0)) == "a few"  # 200 px at 1 m = 800 px at 0.5 m
    for bad in (0, -0.5, float("nan"), None):
        with pytest.raises(InputError, match="pixel size"):
            resolution_scale(bad)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_caption_chip_and_raster_windows_agree(gaza, scale):
    label = np.zeros((600, 520), np.uint8)  # 256 chips, edge chips 88 rows / 8 cols
    label[10:40, 10:40] = 1  # 900 px
    label[100:200, 150:250] = 2  # 10000 px
    label[300:360, 300:400] = 5  # 6000 px
    label[520:600, 100:140] = 3  # 3200 px in an edge chip
    label[250:262, 512:520] = 4  # 96 px across two edge chips
    chips = list(caption_raster_windows(label, gaza, chip=256, rng=7, quantity_scale=scale))
    gen = random.Random(7)
    expected = []
    for win in chip_windows(*label.shape, 256):
        r, c, h, w = win["row_off"], win["col_off"], win["height"], win["width"]
        quads, sentences = caption_chip(label[r : r + h, c : c + w], gaza, gen, quantity_scale=scale)
        if quads:
            expected.append({"window": win, "quadruples": [q.to_dict() for q in quads], "sentences": sentences})
    assert chips == expected and len(chips) == 5
    assert {q["quantity"] for x in chips for q in x["quadruples"]} >= {"a single", "a few", "multiple"}


def test_edge_chip_uses_its_own_size(building):
    # 300x300 raster cut in 256 chips: the bottom-right chip is 44x44.
    label = np.zeros((300, 300), np.uint8)
    label[256:266, 256:266] = 1  # 100 px in the chip's north-west
    chips = list(caption_raster_windows(label, building, chip=256, rng=0))
    assert len(chips) == 1
    assert chips[0]["window"] == {"row_off": 256, "col_off": 256, "height": 44, "width": 44}
    q = chips[0]["quadruples"][0]
    assert q["direction"] == "northwest"  # grid of the 44x44 chip
    assert q["quantity"] == "a single"  # thresholds are pixels: no scaling to the small chip


# ----------------------------------------------------------------------------- quadruples


def test_multi_class_chip_sorted_by_id_with_sentences_aligned(gaza):
    label = np.zeros((256, 256), np.uint8)
    label[200:250, 200:250] = 5  # south-east, 2500 px: a few
    label[10:20, 10:20] = 1  # north-west, 100 px: a single
    label[100:150, 20:60] = 3  # west, 2000 px: a few
    quads, sentences = caption_chip(label, gaza, rng=0)
    assert [q.class_id for q in quads] == [1, 3, 5]
    assert [(q.direction, q.quantity, q.pixels) for q in quads] == [
        ("northwest", "a single", 100), ("west", "a few", 2000), ("southeast", "a few", 2500)
    ]  # fmt: skip
    assert len(sentences) == 3
    for q, s in zip(quads, sentences):
        assert q.direction in s and q.quantity in s.lower() and q.type in s and q.category in s
    assert quads[0].category == "building"  # singular with "a single"
    assert quads[1].category == "refugee camps" and quads[2].category == "greenhouses"


def test_no_change_and_nodata_give_no_quadruple(gaza):
    label = np.zeros((64, 64), np.uint8)
    label[:10] = NODATA_CLASS
    assert quadruples(label, gaza) == []
    assert caption_chip(label, gaza, rng=0) == ([], [])


def test_nodata_pixels_are_not_counted(building):
    label = np.full((512, 512), NODATA_CLASS, np.uint8)  # 799 class pixels, the rest ignored
    label.ravel()[:799] = 1
    (q,) = quadruples(label, building)
    assert q.pixels == 799 and q.quantity == "a single"


def test_value_not_in_schema_is_an_input_error_naming_it(building):
    label = np.zeros((32, 32), np.uint8)
    label[3, 3] = 7
    with pytest.raises(InputError, match=r"label value\(s\) 7 in mask\.tif .*'building'"):
        quadruples(label, building, where="mask.tif")
    label[3, 3] = 254
    with pytest.raises(InputError, match="254"):
        caption_chip(label, building)


def test_bad_arrays_are_input_errors(building):
    with pytest.raises(InputError, match="2-D"):
        quadruples(np.zeros((2, 8, 8), np.uint8), building)
    with pytest.raises(InputError, match="non-integer value 0.5"):
        quadruples(np.full((4, 4), 0.5), building)
    with pytest.raises(InputError, match="-1"):
        quadruples(np.full((4, 4), -1, np.int16), building)
    floats = np.zeros((8, 8), np.float32)
    floats[0, 0] = 1.0
    assert quadruples(floats, building)[0].pixels == 1  # integral floats are fine


def test_quadruple_dict_has_the_output_keys(building):
    (q,) = quadruples(first_pixels(5, 16, 16), building)
    assert isinstance(q, Quadruple)
    assert list(q.to_dict()) == ["class_id", "category", "type", "direction", "quantity", "pixels"]


# ----------------------------------------------------------------------------- templates


def quad(direction="northeast", quantity="a few", category="buildings", type_="destroyed"):
    return Quadruple(1, category, type_, direction, quantity, 1000)


def test_every_template_of_table_1():
    q = quad()
    assert [render(q, i) for i in range(5)] == [
        "The scene shows a few destroyed buildings in the northeast.",
        "Observing a few destroyed buildings towards the northeast.",
        "A few destroyed buildings located in the northeast.",
        "In the northeast, a few destroyed buildings are visible.",
        "There are a few destroyed buildings in the northeast region.",
    ]
    assert len(TEMPLATES) == 5


def test_is_are_agrees_with_quantity():
    single = quad(quantity="a single", category="building")
    assert render(single, 3) == "In the northeast, a single destroyed building is visible."
    assert render(single, 4) == "There is a single destroyed building in the northeast region."
    for quantity in QUANTITIES[1:]:
        assert render(quad(quantity=quantity), 3).endswith(" are visible.")
        assert render(quad(quantity=quantity), 4).startswith("There are ")


@pytest.mark.parametrize("template", range(5))
def test_center_uses_the_neutral_variant_whatever_the_template(template):
    q = quad(direction="center", quantity="several", category="greenhouses", type_="newly built")
    assert render(q, template) == "The scene shows several newly built greenhouses in the center."
    assert CENTER_TEMPLATE.startswith("The scene shows")


@pytest.mark.parametrize("template", range(5))
@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_sentences_are_clean(template, quantity, direction):
    s = render(quad(direction=direction, quantity=quantity), template)
    assert SENTENCE.match(s), s
    assert "  " not in s and quantity in s.lower()


def test_render_rejects_unknown_template():
    with pytest.raises(ValueError):
        render(quad(), 5)


# ----------------------------------------------------------------------------- ablation


def words(s: str) -> list[str]:
    return re.findall(r"[a-z]+", s.lower())


@pytest.mark.parametrize("template", range(5))
@pytest.mark.parametrize("element", ELEMENTS)
@pytest.mark.parametrize("direction", ["northeast", "center"])
@pytest.mark.parametrize("quantity", QUANTITIES)
def test_dropping_one_element_leaves_it_out_of_every_template(template, element, direction, quantity):
    category = "building" if quantity == "a single" else "buildings"
    q = quad(direction=direction, quantity=quantity, category=category)
    s = render(q, template, drop=(element,))
    assert s and SENTENCE.match(s) and s.count(".") == 1 and "  " not in s, s
    dropped = {"quantity": quantity, "type": "destroyed", "category": category, "location": direction}[element]
    w = words(s)
    assert not any(w[i : i + len(dropped.split())] == dropped.split() for i in range(len(w))), s
    for other in set(ELEMENTS) - {element}:  # the others stay
        kept = {"quantity": quantity, "type": "destroyed", "category": category, "location": direction}[other]
        assert kept in s.lower(), (other, s)
    if quantity == "a single" and element != "quantity":
        assert " are " not in s and not s.startswith("There are")


def test_drop_location_forms():
    q = quad(quantity="several")
    assert [render(q, i, drop=("location",)) for i in range(5)] == [
        "The scene shows several destroyed buildings.",
        "Observing several destroyed buildings.",
        "Several destroyed buildings located in the scene.",
        "Several destroyed buildings are visible.",
        "There are several destroyed buildings.",
    ]
    assert len(NO_LOCATION_TEMPLATES) == len(TEMPLATES)
    # nothing tells where, not even the centre variant
    assert {render(quad(direction=d), 2, drop="location") for d in DIRECTIONS} == {"A few destroyed buildings located in the scene."}
    single = quad(quantity="a single", category="building")
    assert render(single, 3, drop=["location"]) == "A single destroyed building is visible."
    assert render(single, 4, drop=["location"]) == "There is a single destroyed building."


def test_drop_quantity_type_category_forms():
    q = quad()
    assert render(q, 0, drop=("quantity",)) == "The scene shows destroyed buildings in the northeast."
    assert render(q, 2, drop=("quantity",)) == "Destroyed buildings located in the northeast."
    assert render(q, 4, drop=("quantity",)) == "There are destroyed buildings in the northeast region."
    single = quad(quantity="a single", category="building")
    assert render(single, 0, drop=("quantity",)) == "The scene shows a destroyed building in the northeast."
    assert render(single, 3, drop=("quantity", "type")) == "In the northeast, a building is visible."
    field = quad(quantity="a single", category="agricultural field")
    assert render(field, 4, drop=("quantity", "type")) == "There is an agricultural field in the northeast region."
    assert render(q, 1, drop=("type",)) == "Observing a few buildings towards the northeast."
    assert render(q, 0, drop=("category",)) == "The scene shows a few destroyed areas in the northeast."
    assert render(single, 3, drop=("category",)) == "In the northeast, a single destroyed area is visible."
    assert render(q, 0, drop=("type", "category")) == "The scene shows a few areas of change in the northeast."
    assert render(quad(direction="center"), 3, drop=("type",)) == "The scene shows a few buildings in the center."
    assert render(q, 0, drop=ELEMENTS) == "The scene shows areas of change."
    assert render(single, 2, drop=ELEMENTS) == "An area of change located in the scene."
    assert render(q, 0, drop=()) == render(q, 0)


@pytest.mark.parametrize("template", range(5))
@pytest.mark.parametrize("drop", [d for n in range(5) for d in itertools.combinations(ELEMENTS, n)])
def test_every_combination_is_a_clean_sentence(template, drop):
    for q in (quad(), quad(quantity="a single", category="building"), quad(direction="center", quantity="multiple")):
        s = render(q, template, drop=drop)
        assert SENTENCE.match(s) and "  " not in s and " ," not in s, (drop, s)


def test_drop_is_validated_naming_the_bad_element(building):
    with pytest.raises(InputError, match="'colour'"):
        render(quad(), 0, drop=("location", "colour"))
    with pytest.raises(InputError, match="'where'"):
        caption_chip(np.zeros((8, 8), np.uint8), building, drop=("where",))  # even without change


def test_caption_chip_threads_drop(gaza):
    label = np.zeros((90, 90), np.uint8)
    label[:10, :10] = 1
    label[-10:, -10:] = 2
    full, sentences = caption_chip(label, gaza, template=0)
    quads, reduced = caption_chip(label, gaza, template=0, drop=("location", "quantity"))
    assert quads == full  # the quadruples stay complete
    assert reduced == ["The scene shows a destroyed building.", "The scene shows a newly built building."]
    assert caption_chip(label, gaza, rng=3, drop="type") == (full, [render(q, random.Random(3).randrange(5), "type") for q in full])


def test_quadruple_key_keeps_the_kept_elements():
    q = quad()
    assert q.key() == (1, "a few", "destroyed", "buildings", "northeast")
    assert q.key(("location",)) == (1, "a few", "destroyed", "buildings")
    assert q.key(("type",)) == ("a few", "buildings", "northeast")  # no class id: it would tell the type
    assert q.key(("category", "quantity")) == ("destroyed", "northeast")
    assert q.key(ELEMENTS) == ()
    assert hash(q.key()) == hash(quad().key())
    assert quad(direction="north").key() != q.key() and quad(direction="north").key("location") == q.key("location")
    other = Quadruple(2, "buildings", "newly built", "northeast", "a few", 1000)
    assert other.key(("type",)) == q.key(("type",)) and other.key() != q.key()
    assert Quadruple(1, "buildings", "destroyed", "northeast", "a few", 3000).key() == q.key()  # pixels are no element
    with pytest.raises(InputError, match="'size'"):
        q.key(("size",))


def test_forced_template_and_one_template_per_chip(gaza):
    label = np.zeros((90, 90), np.uint8)
    label[:10, :10] = 1
    label[-10:, -10:] = 2
    _, sentences = caption_chip(label, gaza, template=1)
    assert all(s.startswith("Observing ") for s in sentences)
    for seed in range(10):  # the drawn template is shared by the chip's sentences
        _, sentences = caption_chip(label, gaza, rng=seed)
        assert len({s.split()[0] for s in sentences}) == 1


def test_seed_reproducibility_and_random_instance(gaza):
    label = np.zeros((512, 512), np.uint8)  # 64 chips of 64 px, one off-centre blob each
    for i, (r, c) in enumerate((r, c) for r in range(0, 512, 64) for c in range(0, 512, 64)):
        label[r + 2 : r + 10, c + 40 : c + 48] = 1 + i % 6
    a = list(caption_raster_windows(label, gaza, chip=64, rng=11))
    b = list(caption_raster_windows(label, gaza, chip=64, rng=11))
    c = list(caption_raster_windows(label, gaza, chip=64, rng=random.Random(11)))
    d = list(caption_raster_windows(label, gaza, chip=64, rng=12))
    assert a == b == c
    assert [x["quadruples"] for x in a] == [x["quadruples"] for x in d]
    assert [x["sentences"] for x in a] != [x["sentences"] for x in d]
    # Over 64 chips all five templates are drawn (template 3 starts with the quantity).
    first_words = {s.split()[0] for x in a for s in x["sentences"]}
    assert {"The", "Observing", "In", "There"} <= first_words
    assert first_words & {"A", "Several", "Multiple"}


# ----------------------------------------------------------------------------- windows


def test_chip_windows_raster_order_and_edges():
    wins = chip_windows(300, 500, 256)
    assert [(w["row_off"], w["col_off"], w["height"], w["width"]) for w in wins] == [
        (0, 0, 256, 256), (0, 256, 256, 244), (256, 0, 44, 256), (256, 256, 44, 244)
    ]  # fmt: skip
    assert chip_windows(300, 500) == [{"row_off": 0, "col_off": 0, "height": 300, "width": 500}]
    with pytest.raises(InputError):
        chip_windows(10, 10, 0)


def test_caption_raster_windows_skips_chips_without_change(gaza):
    label = np.zeros((128, 128), np.uint8)
    label[70:80, 5:15] = 4  # bottom-left chip only
    label[0:5, 0:5] = NODATA_CLASS
    chips = list(caption_raster_windows(label, gaza, chip=64, rng=0))
    assert [c["window"] for c in chips] == [{"row_off": 64, "col_off": 0, "height": 64, "width": 64}]
    (q,) = chips[0]["quadruples"]
    assert q == {"class_id": 4, "category": "agricultural field", "type": "destroyed", "direction": "northwest",
                 "quantity": "a single", "pixels": 100}  # fmt: skip
    assert chips[0]["sentences"][0].endswith(".")


def test_caption_raster_windows_checks_the_whole_raster_first(building):
    label = np.zeros((128, 128), np.uint8)
    label[0, 0] = 1
    label[127, 127] = 9
    with pytest.raises(InputError, match="9"):
        next(caption_raster_windows(label, building, chip=64))


def test_caption_raster_windows_reports_progress_and_honours_cancel(building):
    from engine.errors import Cancelled
    from engine.progress import CallbackProgress

    events = []
    label = np.ones((64, 64), np.uint8)
    list(caption_raster_windows(label, building, chip=32, progress=CallbackProgress(events.append)))
    assert [e["fraction"] for e in events] == [0.25, 0.5, 0.75, 1.0]
    stop = CallbackProgress(lambda e: None, cancel_callback=lambda: True)
    with pytest.raises(Cancelled):
        list(caption_raster_windows(label, building, chip=32, progress=stop))


# ----------------------------------------------------------------------------- label map


def test_label_map_remaps_raw_values_once():
    raw = np.array([[0, 255], [1, 2]], np.uint8)
    assert apply_label_map(raw, {255: 1}).tolist() == [[0, 1], [1, 2]]
    assert apply_label_map(raw, {1: 2, 2: 1}).tolist() == [[0, 255], [2, 1]]  # a swap, not a chain
    assert apply_label_map(raw, {}).tolist() == raw.tolist()
    wide = apply_label_map(np.array([[0, 1000]], np.uint16), {1000: 3})
    assert wide.tolist() == [[0, 3]]
    small = apply_label_map(np.array([[0, -1]], np.int8), {-1: 200})
    assert small.tolist() == [[0, 200]]  # widened to hold 200


def test_label_map_makes_binary_masks_captionable(building):
    raw = np.zeros((256, 256), np.uint8)
    raw[:30, -30:] = 255
    assert quadruples(raw, building) == []  # without a map 255 is "ignore"
    with pytest.raises(InputError, match="--label-map"):
        quadruples(np.where(raw == 255, 128, 0).astype(np.uint8), building)
    (q,) = quadruples(apply_label_map(raw, {255: 1}), building)
    assert (q.direction, q.quantity, q.pixels) == ("northeast", "a few", 900)


def test_chip_caption_attributes_are_readable_and_complete(gaza):
    import json

    from engine.captions import CHIP_CAPTION_FIELDS, chip_caption_attributes

    label = np.zeros((256, 256), np.uint8)
    label[0:40, 200:250] = 1  # 2000 px, northeast
    label[120:130, 120:130] = 3  # 100 px, centre
    quads, sentences = caption_chip(label, gaza, 0)
    attrs = chip_caption_attributes(2, 5, quads, sentences)
    assert list(attrs) == list(CHIP_CAPTION_FIELDS)
    assert (attrs["chip_row"], attrs["chip_col"]) == (2, 5)
    assert attrs["caption"] == " ".join(sentences)
    assert attrs["classes"] == "destroyed buildings; newly established refugee camp"
    assert attrs["directions"] == "northeast; center"
    assert attrs["quantities"] == "a few; a single"  # 800 <= 2000 < 4000 on a 256x256 chip too
    assert attrs["changed_pixels"] == 2100
    assert json.loads(attrs["quadruples"]) == [q.to_dict() for q in quads]
    assert chip_caption_attributes(0, 0, [q.to_dict() for q in quads], sentences) == {**attrs, "chip_row": 0, "chip_col": 0}
