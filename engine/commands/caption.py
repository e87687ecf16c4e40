"""``python -m engine caption``: S2M sentences from a label raster.

Reads a class raster (GeoTIFF, PNG or any single-band raster GDAL reads; values = class
ids, 255 = ignore), optionally remaps raw values (``--label-map 255:1`` for 0/255 masks),
cuts it into chips and prints, for every chip with a change class, its window, its
quadruples and one sentence per quadruple (see :mod:`engine.captions`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..captions import apply_label_map, caption_raster_windows
from ..errors import InputError
from ..schema import NODATA_CLASS, ClassSchema, parse_label_map, preset_names, resolve_schema

HELP = "describe the changes of a label raster with S2M sentences (where, what, how, how many)"


def configure(parser) -> None:
    from ..options import bounded, one_line_errors, path

    one_line_errors(parser)
    parser.add_argument("label", type=path, help="label raster (GeoTIFF or PNG), one band of class ids, 255 = ignore")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", help=f"class schema preset: {', '.join(preset_names())}")
    group.add_argument("--schema", type=path, help="class schema JSON file")
    parser.add_argument("--chip", type=bounded(int, 1), default=None, help="chip size in pixels (default: the whole raster as one chip)")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of the template draw (default 0)")
    parser.add_argument("--label-map", default=None, help="remap raw values first, e.g. 255:1 for 0/255 masks")
    parser.add_argument("--json", action="store_true", help="print the chips as a JSON list")


def read_label(path: str | Path, label_map: dict[int, int] | None = None, schema: ClassSchema | None = None) -> np.ndarray:
    """Read band 1 of a label raster as class ids ``(H, W)``.

    Raw values are remapped with ``label_map`` first; pixels equal to the file's nodata
    value (when it has one and the map does not name it) become 255 (ignore).

    Raises:
        InputError: missing or unreadable file, more than one band, or a label map
            that targets an id the schema does not have.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    p = Path(path)
    if not p.exists():
        raise InputError(f"label raster {p} does not exist; give the path of a GeoTIFF or PNG of class ids")
    if p.is_dir():
        raise InputError(f"label raster {p} is a folder; give the path of a GeoTIFF or PNG of class ids")
    mapping = dict(label_map or {})
    if schema is not None:
        bad = {raw: cid for raw, cid in mapping.items() if not (0 <= cid < schema.num_classes or cid == NODATA_CLASS)}
        if bad:
            raw, cid = next(iter(bad.items()))
            raise InputError(
                f"--label-map maps {raw} to {cid}, which is no class of schema {schema.name!r} "
                f"(ids 0..{schema.num_classes - 1}, 255 = ignore)"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(p) as src:
                if src.count != 1:
                    raise InputError(
                        f"label raster {p} has {src.count} bands; expected one band of class ids "
                        "(save the mask as a single-band or palette image)"
                    )
                raw = src.read(1)
                nodata = src.nodata
    except RasterioIOError as exc:
        raise InputError(f"cannot read label raster {p}: {str(exc).rstrip('.')}; expected a GeoTIFF or PNG of class ids") from None
    labels = apply_label_map(raw, mapping)
    if nodata is not None:
        is_nodata = np.isnan(raw) if (raw.dtype.kind == "f" and np.isnan(nodata)) else raw == nodata
        if nodata in mapping:
            is_nodata = np.zeros_like(is_nodata)
        if is_nodata.any():
            if labels.dtype.kind == "f":
                labels = np.where(is_nodata, NODATA_CLASS, labels)
            else:
                labels = labels.copy()
                labels[is_nodata] = NODATA_CLASS
    return labels


def run(args, progress) -> dict:
    schema = resolve_schema(args.preset, args.schema)
    label_path = Path(args.label)
    progress.report(0.0, f"reading {label_path.name}")
    labels = read_label(label_path, parse_label_map(args.label_map), schema)
    chips = list(
        caption_raster_windows(labels, schema, chip=args.chip, rng=args.seed, progress=progress, where=str(label_path))
    )
    hint = ""
    if not chips and not args.label_map and bool((labels == NODATA_CLASS).any()):
        hint = ("its changed pixels may be stored as 255, which means 'ignore'; "
                "for 0/255 masks (LEVIR-CD, WHU-CD) add --label-map 255:1")
        progress.log(f"{label_path.name}: no change class found; {hint}", "warning")
    if not args.json and args.progress != "jsonl":
        if not chips:
            print(f"{label_path}: no change class in any chip" + (f" ({hint})" if hint else ""))
        for item in chips:
            w = item["window"]
            print(f"chip row {w['row_off']} col {w['col_off']} ({w['height']}x{w['width']}):")
            for sentence in item["sentences"]:
                print(f"  {sentence}")
    return {"json": chips, "chips": len(chips), "label": str(label_path), "schema": schema.name}
