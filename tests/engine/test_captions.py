"""The S2M captioner (paper section 3.1, Table 1): quadruples, thresholds, templates."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from engine.captions import (
    CENTER_TEMPLATE,
    DIRECTIONS,
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


@pytest.mark.parametrize(
    "pixels, expected",
    [(199, "a single"), (200, "a few"), (999, "a few"), (1000, "several"), (1999, "several"), (2000, "multiple")],
)
def test_quantity_thresholds_scaled_on_256_chip(building, pixels, expected):
    # 256x256 is a quarter of 512x512: thresholds 200 / 1000 / 2000.
    (q,) = quadruples(first_pixels(pixels, 256, 256), building)
    assert q.quantity == expected


def test_quantity_of_scales_by_area_of_non_square_chip():
    # 100x200 chip: 800 * 20000 / 262144 = 61.04 -> 61 is a single, 62 a few.
    assert quantity_of(61, 100, 200) == "a single"
    assert quantity_of(62, 100, 200) == "a few"
    assert quantity_of(799) == "a single" and quantity_of(800) == "a few"  # default: 512x512
    assert [quantity_of(n, 1024, 1024) for n in (3199, 3200, 16000, 32000)] == ["a single", "a few", "several", "multiple"]


def test_edge_chip_uses_its_own_size(building):
    # 300x300 raster cut in 256 chips: the bottom-right chip is 44x44.
    label = np.zeros((300, 300), np.uint8)
    label[256:266, 256:266] = 1  # 100 px in the chip's north-west
    chips = list(caption_raster_windows(label, building, chip=256, rng=0))
    assert len(chips) == 1
    assert chips[0]["window"] == {"row_off": 256, "col_off": 256, "height": 44, "width": 44}
    q = chips[0]["quadruples"][0]
    assert q["direction"] == "northwest"  # grid of the 44x44 chip
    # 44*44/512^2 scales 8000 to 59: 100 px is "multiple" here (it would be "a single" on 256x256).
    assert q["quantity"] == "multiple"


# ----------------------------------------------------------------------------- quadruples


def test_multi_class_chip_sorted_by_id_with_sentences_aligned(gaza):
    label = np.zeros((256, 256), np.uint8)
    label[200:250, 200:250] = 5  # south-east, 2500 px: multiple
    label[10:20, 10:20] = 1  # north-west, 100 px: a single
    label[100:150, 20:60] = 3  # west, 2000 px: multiple
    quads, sentences = caption_chip(label, gaza, rng=0)
    assert [q.class_id for q in quads] == [1, 3, 5]
    assert [(q.direction, q.quantity, q.pixels) for q in quads] == [
        ("northwest", "a single", 100), ("west", "multiple", 2000), ("southeast", "multiple", 2500)
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
    assert q == {"class_id": 4, "category": "agricultural fields", "type": "destroyed", "direction": "northwest",
                 "quantity": "several", "pixels": 100}  # fmt: skip  (64x64 chip: 12.5 / 62.5 / 125)
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
    assert attrs["quantities"] == "multiple; a single"  # 2000 px >= 8000 * 256² / 512²
    assert attrs["changed_pixels"] == 2100
    assert json.loads(attrs["quadruples"]) == [q.to_dict() for q in quads]
    assert chip_caption_attributes(0, 0, [q.to_dict() for q in quads], sentences) == {**attrs, "chip_row": 0, "chip_col": 0}
