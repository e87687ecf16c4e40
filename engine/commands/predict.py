"""``python -m engine predict``: change classes over a whole scene, with captioned polygons.

Writes a tiled, compressed GeoTIFF on the *before* raster's grid (band 1 class ids with
the schema's colours, band 2 confidence in percent; 255 = nodata) and, with
``--vectors``, a GeoPackage with the ``changes`` and ``captions`` layers. Runs under
``torchrun --nproc_per_node N -m engine predict ...`` too: each process predicts a share
of the chip rows and process 0 assembles the result. See :mod:`engine.inference`.

Option defaults come from :class:`engine.inference.config.PredictConfig` (one declaration).
"""

from __future__ import annotations

HELP = "predict change classes over a scene (GeoTIFF) and describe them (GeoPackage with S2M captions)"

EPILOG = """\
Outputs: no output may be an input; an existing output is refused unless --overwrite.
Every output is written under a temporary name beside it and all are moved into place
together once complete: a failure or a cancel leaves nothing at the output paths (an
existing file stays as it was).

Runtime: auto runs ONNX Runtime on the CPU when installed (the model is exported once per
checkpoint and chip size, cached in CHECKPOINT/onnx-cache/), else PyTorch; the log says
which. onnx-int8 quantises on chips of the scene and falls back to fp32 when its classes
agree with fp32 on less than 99.5 %% of the pixels.

Threshold: two classes: a pixel is changed when P(change) >= --threshold; more classes:
when 1 - P(no change) >= --threshold, and then takes the most probable change class.
Without --threshold: the model card's threshold when it has one (train calibrates it on
its validation area; the log of train says which), else 0.5 for two
classes (the most probable class) and the most probable class for more.
"""


def configure(parser) -> None:
    import argparse

    from ..inference.config import DEVICES, RUNTIMES, TTA_MODES, default_of as d
    from ..options import bounded, one_line_errors, path

    one_line_errors(parser)
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--before", required=True, type=path, help="first-date raster; the output has its grid (CRS, transform, size)")
    io.add_argument("--after", required=True, type=path, help="second-date raster (any grid overlapping before; aligned on the fly)")
    io.add_argument("--model", required=True, type=path, help="checkpoint folder, or a training run folder (its best checkpoint)")
    io.add_argument("--out", required=True, type=path, help="output GeoTIFF (.tif)")
    io.add_argument("--vectors", default=d("vectors"), type=path, help="also write change polygons and chip captions to this GeoPackage (.gpkg)")
    io.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse them); replaced only when all are complete")
    det = parser.add_argument_group("detection")
    det.add_argument("--threshold", type=bounded(float, 0, 1), default=d("threshold"), metavar="P",
                     help="probability of change from which a pixel is changed, 0..1 (default: the model card's, else 0.5 "
                          "for two classes and the most probable class for more)")
    det.add_argument("--tta", choices=TTA_MODES, default=d("tta"),
                     help="test-time augmentation: flips = average the model over the chip as it is and flipped left-right, "
                          "up-down and both (4x the model time; change F1 0.578 -> 0.605 on held-out DSIFN-CD pairs) "
                          "(default %(default)s)")
    det.add_argument("--min-area", type=bounded(float, 0), default=d("min_area"), help="drop change polygons smaller than this, square metres (default %(default)s)")
    det.add_argument("--min-pixels", type=bounded(int, 0), default=d("min_pixels"), help="drop change polygons with fewer pixels (default %(default)s)")
    det.add_argument("--extent", default=None, metavar="XMIN,YMIN,XMAX,YMAX", help="predict only this box, in the before raster's CRS (default: all of before)")
    det.add_argument("--aoi", default=d("aoi"), type=path, help="polygon layer (GeoPackage, Shapefile, GeoJSON ...): pixels outside its polygons are nodata (default: none)")
    det.add_argument("--aoi-layer", default=d("aoi_layer"), help="layer of --aoi (default: the only one, or 'aoi')")
    det.add_argument("--seed", type=bounded(int, 0), default=d("caption_seed"), help="seed of the caption template draw (default %(default)s)")
    run = parser.add_argument_group("tiling and speed")
    run.add_argument("--chip", type=bounded(int, 1), default=d("chip"), help="chip side in pixels (default: the larger of the model's training chip and 512, "
                     "plus the overlap, at most the raster's size)")
    run.add_argument("--overlap", type=bounded(int, 0), default=d("overlap"), help="pixels shared by neighbouring chips, blended (default %(default)s)")
    run.add_argument("--batch-size", type=bounded(int, 1), default=d("batch_size"), help="chips per forward pass (default %(default)s; halved on CUDA out-of-memory)")
    run.add_argument("--device", choices=DEVICES, default=d("device"), help="where the model runs (default %(default)s)")
    run.add_argument("--runtime", choices=RUNTIMES, default=d("runtime"),
                     help="what runs the model: auto (ONNX Runtime on the CPU when installed, else PyTorch), torch, onnx, onnx-int8 (default %(default)s)")
    run.add_argument("--readers", type=bounded(int, 0), default=d("readers"), help="reading threads (default: 1 on the CPU, 4 on CUDA)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args, progress) -> dict:
    from ..inference import PredictConfig, parse_extent, predict
    from ..options import enforce

    enforce("predict", vars(args))  # the option rules (none between predict's options yet), before any work

    config = PredictConfig(
        before=args.before, after=args.after, model=args.model, out=args.out, vectors=args.vectors,
        overwrite=args.overwrite, chip=args.chip, overlap=args.overlap, batch_size=args.batch_size,
        device=args.device, runtime=args.runtime, threshold=args.threshold, tta=args.tta, extent=parse_extent(args.extent),
        aoi=args.aoi, aoi_layer=args.aoi_layer, min_area=args.min_area, min_pixels=args.min_pixels,
        readers=args.readers, caption_seed=args.seed,
    )
    result = predict(config, progress)
    if not args.json and args.progress != "jsonl" and result.get("rank", 0) == 0:
        print(f"wrote {result['raster']}" + (f" and {result['vectors']}" if result.get("vectors") else ""))
        if "pixels_changed" in result:
            print(f"{result['pixels_changed']} changed of {result['pixels_valid']} valid pixels, "
                  f"{result['megapixels_per_second']} MP/s on {result['device']} ({result['runtime']})")
    return result
