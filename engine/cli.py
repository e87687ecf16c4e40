"""Command-line front of the engine: ``python -m engine <command> ...``.

This is the single boundary where errors become messages and exit codes:

==========  ==========================================================
exit code   meaning
==========  ==========================================================
0           success
1           engine error (a bug or an unexpected failure; traceback on stderr)
2           bad input (message only, no traceback)
3           unusable model / checkpoint
130         cancelled (SIGINT / SIGTERM / progress callback)
==========  ==========================================================

With ``--progress jsonl`` every outcome is also one JSON line on stdout
(``done``, ``error`` or ``cancelled``), which is what the QGIS plugin reads.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from typing import Sequence

from . import __version__
from .commands import COMMANDS
from .errors import Cancelled, EngineError
from .progress import install_signal_handlers, make_progress

log = logging.getLogger("engine")


def _common_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--progress",
        choices=("auto", "tqdm", "jsonl", "none"),
        default="auto",
        help="how to report progress: a bar on a terminal (auto/tqdm), JSON lines on stdout "
        "for programs such as the QGIS plugin (jsonl), or nothing",
    )
    parent.add_argument("--log-level", default="WARNING", help="Python logging level on stderr (default WARNING)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="MaskTalk engine: S2M change detection with captions from change masks.",
    )
    parser.add_argument("--version", action="version", version=f"MaskTalk engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parent = _common_parent()
    for name, module_name in COMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[parent])
        module.configure(p)
        p.set_defaults(_module=module)
    return parser


def _load(module_name: str):
    try:
        return importlib.import_module(f".commands.{module_name}", __package__)
    except ModuleNotFoundError as exc:  # a command not built yet
        if exc.name and exc.name.endswith(f"commands.{module_name}"):
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Under torchrun every rank runs this; only rank 0 talks to the user (the jobs
    # reduce their results onto rank 0), the others report nothing.
    rank = int(os.environ.get("RANK", "0") or 0)
    progress = make_progress(args.progress if rank == 0 else "none")
    install_signal_handlers()
    jsonl = args.progress == "jsonl" and rank == 0
    if jsonl:
        progress.event("start", command=args.command, version=__version__)
    try:
        result = args._module.run(args, progress)
    except Cancelled as exc:
        progress.close()
        if jsonl:
            progress.event("cancelled", message=str(exc))
        print(f"cancelled: {exc}", file=sys.stderr)
        return Cancelled.exit_code
    except EngineError as exc:
        progress.close()
        if jsonl:
            progress.event("error", message=str(exc), kind=type(exc).__name__)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        progress.close()
        if jsonl:
            progress.event("cancelled", message="interrupted")
        print("interrupted", file=sys.stderr)
        return Cancelled.exit_code
    except Exception as exc:  # a bug: keep the traceback for the report
        progress.close()
        tb = traceback.format_exc()
        if jsonl:
            progress.event("error", message=f"internal error: {type(exc).__name__}: {exc}", kind="InternalError", traceback=tb)
        print(tb, file=sys.stderr)
        return 1
    progress.close()
    if jsonl:
        progress.event("done", result=result if result is not None else {})
    elif rank == 0 and getattr(args, "json", False) and result is not None:
        payload = result.get("json", result) if isinstance(result, dict) else result
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    return 0
