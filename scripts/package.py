"""Build the plugin zip that plugins.qgis.org expects.

One top-level folder ``masktalk/`` holding what QGIS and the engine need at run time:
``metadata.txt``, ``__init__.py``, ``plugin/``, ``engine/``, ``resources/``,
``requirements.txt`` (the engine set-up installs it), ``README.md`` and ``LICENSE``.
No tests, benchmarks, caches, virtual environments, VCS data or model weights.

Usage: ``python scripts/package.py [--out dist/]`` (``make package``). Prints the zip path.
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "masktalk"
INCLUDE = ["metadata.txt", "__init__.py", "LICENSE", "README.md", "requirements.txt", "plugin", "engine", "resources"]
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", ".git", ".venv", ".venv-qgis", "tests"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".pt", ".pth", ".safetensors", ".ckpt", ".onnx", ".zip"}
MAX_BYTES = 20 * 1024 * 1024


def files_to_pack(root: Path = ROOT) -> list[Path]:
    out: list[Path] = []
    for name in INCLUDE:
        path = root / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(root)
                if f.is_file() and not (set(rel.parts) & EXCLUDED_DIRS) and f.suffix not in EXCLUDED_SUFFIXES:
                    out.append(f)
        else:
            raise SystemExit(f"package: {name} is missing from {root}")
    return out


def build(out_dir: Path, root: Path = ROOT) -> Path:
    meta = configparser.ConfigParser()
    meta.read(root / "metadata.txt", encoding="utf-8")
    version = meta["general"]["version"]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}-{version}.zip"
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for f in files_to_pack(root):
            zf.write(f, f"{PACKAGE}/{f.relative_to(root).as_posix()}")
    size = tmp.stat().st_size
    if size > MAX_BYTES:
        tmp.unlink()
        raise SystemExit(f"package: {size / 2**20:.1f} MB is over the {MAX_BYTES / 2**20:.0f} MB limit")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
