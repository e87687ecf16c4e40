"""``python -m engine evaluate``: the paper's metrics of a predicted class map against the truth."""

from __future__ import annotations

from pathlib import Path

HELP = "score predicted change maps against ground truth (SeK, Fscd, mIoU, OA, P/R/F1/IoU)"

_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt", ".bmp"}


def configure(parser) -> None:
    from ..options import bounded, one_line_errors, path

    one_line_errors(parser)
    parser.add_argument("--pred", required=True, type=path, help="predicted class raster, or a folder of them (paired with --truth by file name); 255 = nodata, left out")
    parser.add_argument("--truth", required=True, type=path, help="ground-truth class raster, or a folder of them; 255 = ignored")
    parser.add_argument("--num-classes", type=bounded(int, 2), default=None, help="number of classes including no change (default: the largest value seen + 1, at least 2)")
    parser.add_argument("--label-map", default=None, help="raw truth value -> class id, e.g. 255:1 for LEVIR-CD / WHU-CD")
    parser.add_argument("--pred-label-map", default=None, help="raw prediction value -> class id (default: none; e.g. 255:1 for 0/255 masks)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _pairs(pred: Path, truth: Path) -> list[tuple[Path, Path]]:
    from ..errors import InputError

    for p, what in ((pred, "--pred"), (truth, "--truth")):
        if not p.exists():
            raise InputError(f"{what} {p} does not exist; give a class raster or a folder of them")
    if pred.is_dir() != truth.is_dir():
        raise InputError("--pred and --truth must both be files or both be folders")
    if not pred.is_dir():
        return [(pred, truth)]

    def index(d: Path) -> dict[str, Path]:
        return {f.stem: f for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in _SUFFIXES}

    P, T = index(pred), index(truth)
    if not T:
        raise InputError(f"truth folder {truth} holds no raster (PNG, GeoTIFF ...)")
    missing = sorted(set(T) - set(P))
    if missing:
        raise InputError(f"no prediction for {len(missing)} truth file(s) in {pred}, e.g. {missing[:3]}; files are paired by name")
    return [(P[k], T[k]) for k in sorted(T)]


def _read(path: Path, mapping: dict[int, int]):
    import warnings

    import numpy as np
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    from ..errors import InputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                raw = ds.read(1).astype(np.int64)
    except RasterioIOError as exc:
        reason = str(exc.__cause__ or exc).splitlines()[0].rstrip(". ")  # GDAL's reason, not "see previous exception"
        raise InputError(f"cannot read {path}: {reason}; expected a readable single-band class raster (PNG, GeoTIFF)") from None
    out = raw.copy()
    for src, dst in mapping.items():
        out[raw == src] = dst
    return out


def run(args, progress) -> dict:
    import numpy as np

    from ..errors import InputError
    from ..metrics import ConfusionMatrix
    from ..schema import NODATA_CLASS, parse_label_map

    tmap = parse_label_map(args.label_map)
    pmap = parse_label_map(args.pred_label_map)
    pairs = _pairs(Path(args.pred), Path(args.truth))
    arrays = []
    top = 1
    for i, (p, t) in enumerate(pairs):
        progress.check()
        a, b = _read(p, pmap), _read(t, tmap)
        if a.shape != b.shape:
            raise InputError(
                f"{p} is {a.shape[1]}x{a.shape[0]} px but {t} is {b.shape[1]}x{b.shape[0]} px; "
                "the prediction and the truth must cover the same pixels"
            )
        # 255 in the prediction is nodata (predict writes it where an input is nodata or
        # the dates do not overlap): not a class, so those pixels are left out of the scores.
        keep = (b != NODATA_CLASS) & (a != NODATA_CLASS)
        if keep.any():
            top = max(top, int(a[keep].max()), int(b[keep].max()))
        arrays.append((p, t, a, b))
        progress.report((i + 1) / (2 * len(pairs)), f"read {t.name}")
    k = args.num_classes or top + 1  # at least 2: --num-classes is bounded, top starts at 1
    cm = ConfusionMatrix(k)
    unpredicted = 0
    for i, (p, t, a, b) in enumerate(arrays):
        progress.check()
        gap = (a == NODATA_CLASS) & (b != NODATA_CLASS)
        if gap.any():
            unpredicted += int(gap.sum())
            b = np.where(gap, NODATA_CLASS, b)
        try:
            cm.update(a, b)
        except ValueError as exc:
            raise InputError(f"{p.name} / {t.name}: {exc}") from None
        progress.report(0.5 + (i + 1) / (2 * len(arrays)), f"scored {t.name}")
    if cm.matrix.sum() == 0:
        raise InputError(
            f"no pixel to evaluate: the truth is 255 (ignored) or the prediction is 255 (nodata) everywhere "
            f"in {args.truth} / {args.pred}"
        )
    if unpredicted:
        progress.log(
            f"{unpredicted} labelled pixel(s) have no prediction (255 = nodata in {args.pred}) and are left out of the scores",
            "warning",
        )
    scores = cm.scores()
    scores = {key: (float(v) if isinstance(v, (float, np.floating)) else v) for key, v in scores.items()}
    scores["pixels_unpredicted"] = unpredicted
    if not args.json and args.progress != "jsonl":
        for key in ("SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU"):
            print(f"{key:>9}: {scores[key]:.4f}")
        for cid, entry in scores["per_class"].items():
            print(f"  class {cid}: IoU {entry['IoU']:.4f}  F1 {entry['F1']:.4f}  support {entry['support']}")
        return None
    return scores
