"""``python -m engine options``: every command's options and rules, for programs (JSON).

Generated from the argparse declarations of the commands (:mod:`engine.options`), so
the QGIS plugin's widgets and Processing parameters take their choices, defaults,
ranges, help and rules from the engine itself. Fast (no torch) unless
``--environment``, which adds this environment's facts (CUDA, ONNX Runtime, DINOv3
weights found, the default backbone) and applies them to the rules.
"""

from __future__ import annotations

HELP = "print every command's options, defaults, choices, ranges and the rules between them (JSON for the QGIS plugin)"


def configure(parser) -> None:
    from ..options import one_line_errors

    one_line_errors(parser)
    parser.add_argument("--json", action="store_true", help="print the description as one JSON object")
    parser.add_argument("--environment", action="store_true",
                        help="also report this environment's facts (CUDA, ONNX Runtime, DINOv3 weights found) and apply them "
                             "to the rules; imports torch (a few seconds)")


def run(args, progress) -> dict | None:
    from ..options import describe

    data = describe(with_environment=args.environment)
    if args.json or args.progress == "jsonl":
        return data
    for name, command in data["commands"].items():
        print(f"{name}: {command['help']}")
        for o in command["options"]:
            bounds = "" if o["minimum"] is None and o["maximum"] is None else f" [{o['minimum']}, {o['maximum']}]"
            choices = f" {{{', '.join(map(str, o['choices']))}}}" if o["choices"] else ""
            print(f"  {o['flag'] or o['dest']:<22} {o['type']:<5} default {o['default']!r}{choices}{bounds}")
        for r in command["rules"]:
            print(f"  rule: {r['option']} {r['effect']} when {r['when']}: {r['why']}")
    if data["environment"]:
        print(f"environment: {data['environment']}")
    return None
