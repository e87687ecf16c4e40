"""``python -m engine predict``: change classes over a whole scene, with captioned polygons.

Writes a tiled, compressed GeoTIFF on the *before* raster's grid (band 1 class ids with
the schema's colours, band 2 confidence in percent; 255 = nodata) and, with
``--vectors``, a GeoPackage with the ``changes`` and ``captions`` layers. Runs under
``torchrun --nproc_per_node N -m engine predict ...`` too: each process predicts a share
of the chip rows and process 0 assembles the result. See :mod:`engine.predict`.
"""

from __future__ import annotations

HELP = "predict change classes over a scene (GeoTIFF) and describe them (GeoPackage with S2M captions)"


def configure(parser) -> None:
    parser.add_argument("--before", required=True, help="first-date raster; the output has its grid (CRS, transform, size)")
    parser.add_argument("--after", required=True, help="second-date raster (any grid overlapping before; aligned on the fly)")
    parser.add_argument("--model", required=True, help="checkpoint folder, or a training run folder (its best checkpoint)")
    parser.add_argument("--out", required=True, help="output GeoTIFF (.tif)")
    parser.add_argument("--vectors", default=None, help="also write change polygons and chip captions to this GeoPackage (.gpkg)")
    parser.add_argument("--chip", type=int, default=None, help="chip side in pixels (default: the model's training chip + overlap)")
    parser.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring chips, blended (default 32)")
    parser.add_argument("--batch-size", type=int, default=4, help="chips per forward pass (default 4; halved on CUDA out-of-memory)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs (default auto)")
    parser.add_argument("--extent", default=None, metavar="XMIN,YMIN,XMAX,YMAX", help="predict only this box, in the before raster's CRS")
    parser.add_argument("--min-area", type=float, default=0.0, help="drop change polygons smaller than this, square metres (default 0)")
    parser.add_argument("--min-pixels", type=int, default=4, help="drop change polygons with fewer pixels (default 4)")
    parser.add_argument("--readers", type=int, default=0, help="reading threads (default: 1 on the CPU, 4 on CUDA)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the caption template draw (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args, progress) -> dict:
    from ..predict import PredictConfig, parse_extent, predict

    config = PredictConfig(
        before=args.before,
        after=args.after,
        model=args.model,
        out=args.out,
        vectors=args.vectors,
        chip=args.chip,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        extent=parse_extent(args.extent),
        min_area=args.min_area,
        min_pixels=args.min_pixels,
        readers=args.readers,
        caption_seed=args.seed,
    )
    result = predict(config, progress)
    if not args.json and args.progress != "jsonl" and result.get("rank", 0) == 0:
        print(f"wrote {result['raster']}" + (f" and {result['vectors']}" if result.get("vectors") else ""))
        if "pixels_changed" in result:
            print(
                f"{result['pixels_changed']} changed of {result['pixels_valid']} valid pixels, "
                f"{result['megapixels_per_second']} MP/s on {result['device']}"
            )
    return result
