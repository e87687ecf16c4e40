"""One module per ``python -m engine`` subcommand.

Each module defines ``HELP`` (one line), ``configure(parser)`` and
``run(args, progress) -> dict``. Modules import only the standard library at import
time (heavy imports go inside ``run``), so ``python -m engine --help`` and the light
commands stay fast. ``run`` returns the JSON-able result that ends up in the ``done``
event (``--progress jsonl``) or is printed with ``--json``.
"""

# name -> module (relative to this package); the order is the order of --help.
COMMANDS = {
    "caption": "caption",
    "train": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "demo": "demo",
    "info": "info",
    "options": "options",
}
