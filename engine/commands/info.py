"""``python -m engine info``: versions, devices and available weights (diagnostics)."""

from __future__ import annotations

import importlib
import platform
import sys

HELP = "print versions, devices and available weights (diagnostics for bug reports)"


def configure(parser) -> None:
    from ..options import one_line_errors

    one_line_errors(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a diagnostics report lists what fails
        return None
    return str(getattr(mod, "__version__", "unknown"))


def collect() -> dict:
    from .. import __version__

    report: dict = {
        "engine": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": {m: _version(m) for m in ("numpy", "torch", "torchvision", "rasterio", "fiona", "transformers", "open_clip", "timm", "peft", "skimage")},
    }
    try:
        import rasterio

        report["gdal"] = rasterio.__gdal_version__
    except Exception:  # noqa: BLE001
        report["gdal"] = None
    try:
        import torch

        cuda = torch.cuda.is_available()
        report["cuda"] = {
            "available": cuda,
            "version": torch.version.cuda,
            "devices": [
                {"name": torch.cuda.get_device_name(i), "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                for i in range(torch.cuda.device_count())
            ]
            if cuda
            else [],
        }
    except Exception:  # noqa: BLE001
        report["cuda"] = None
    try:
        from ..models.registry import available_weights

        report["weights"] = available_weights()
    except Exception as exc:  # noqa: BLE001
        report["weights"] = {"error": str(exc)}
    return report


def run(args, progress) -> dict:
    report = collect()
    if not args.json and args.progress != "jsonl":
        for key, value in report.items():
            print(f"{key}: {value}")
        return None
    return report
