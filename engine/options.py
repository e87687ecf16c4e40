"""Every command's options, declared once, published as JSON and enforced.

The argparse declarations in ``engine/commands/*.configure`` are the one declaration of
an option (flag, type, default, choices, help). This module reads them back so that

- ``python -m engine options --json`` publishes them (what the QGIS plugin builds its
  widgets and Processing parameters from, see ``plugin/engine_options.py``);
- ranges are typed ``type=`` callables (:func:`bounded`) that validate on the command
  line and export ``minimum``/``maximum``;
- the **rules** between options (LoRA only on backbones with attention, DINOv3 needs
  weights, chip sides a multiple of the backbone's size multiple) are declared once, as
  ``rules(facts)`` beside a command's argparse declarations, published with the options
  and enforced here (:func:`enforce`) before a command does any work, with the rule's
  ``why`` as the one-line error.

Rule effects: ``default_only`` -- the option must stay at its default when ``when``
matches (the dock disables its widget, ``why`` as tooltip); ``required`` -- the option
must be given when ``when`` matches; ``multiple_of`` -- a given value must be a multiple
of ``multiple``. ``when`` maps option names to the values under which the rule applies
(all keys must match; ``None`` is the option's default, e.g. the automatic backbone).

Light module (standard library only; the facts of this environment -- CUDA, ONNX Runtime,
DINOv3 weights found -- are computed only on request, by :func:`environment`, which
imports torch): the plugin imports it inside QGIS for its in-process fallback and uses
:func:`violations` so rules are matched by one implementation.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import re
import sys
from typing import Any, Iterable, Mapping, Sequence

from .errors import InputError

DEFAULT_ONLY = "default_only"
REQUIRED = "required"
MULTIPLE_OF = "multiple_of"
EFFECTS = (DEFAULT_ONLY, REQUIRED, MULTIPLE_OF)
#: Options that are plumbing between the engine and its caller, not settings of a job.
PLUMBING = ("help", "progress", "log_level", "json")
#: Commands that publish no options of their own.
NOT_PUBLISHED = ("options",)


# -- model facts the rules need (light mirror of engine/models, checked by tests/engine/test_options.py)
@dataclasses.dataclass(frozen=True)
class BackboneFacts:
    """What the option rules need to know of a backbone, without building it.

    Attributes:
        attention: it has attention projections (where LoRA adapters go).
        needs_weights: it cannot run without downloaded weights (none ship with the engine).
        size_multiple: chip and crop sides must be multiples of this (patch size or stride).
    """

    attention: bool
    needs_weights: bool
    size_multiple: int


#: The registry's backbones (``engine.models.registry.BACKBONES``), in its order.
BACKBONES: dict[str, BackboneFacts] = {
    "dinov3_vits16": BackboneFacts(attention=True, needs_weights=True, size_multiple=16),
    "dinov3_vitb16": BackboneFacts(attention=True, needs_weights=True, size_multiple=16),
    "dinov3_vitl16": BackboneFacts(attention=True, needs_weights=True, size_multiple=16),
    "efficientnet_lite0": BackboneFacts(attention=False, needs_weights=False, size_multiple=32),
}
#: The backbone used when none is named and no DINOv3 weights are found (registry.DEFAULT_FALLBACK).
FALLBACK_BACKBONE = "efficientnet_lite0"
#: Named text encoders of ``engine.models.text.TEXT_ENCODERS`` (``clip:ARCH[:TAG]`` is accepted too).
TEXT_ENCODERS = ("minilm", "clip-vit-b32", "clip-vit-b16", "clip-vit-l14")
TEXT_ENCODER_PREFIXES = ("clip:",)


# -- typed argparse ``type=`` callables ----------------------------------------------------------
class Bounded:
    """``type=`` for a number within a range; validates on the CLI, exports its bounds.

    Args:
        kind: ``int`` or ``float``.
        minimum, maximum: inclusive bounds (None = unbounded).
        open_min, open_max: the bound itself is excluded (``0 < x``).
    """

    def __init__(self, kind: type, minimum: float | None = None, maximum: float | None = None, *,
                 open_min: bool = False, open_max: bool = False) -> None:
        if kind not in (int, float):
            raise TypeError(f"bounded() takes int or float, not {kind!r}")
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.open_min = open_min
        self.open_max = open_max
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def accepts(self, value: float) -> bool:
        if self.minimum is not None and (value < self.minimum or (self.open_min and value == self.minimum)):
            return False
        if self.maximum is not None and (value > self.maximum or (self.open_max and value == self.maximum)):
            return False
        return True

    def describe(self) -> str:
        """``must be ...`` in words (the CLI error and the plugin's problem text)."""
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            if not (self.open_min or self.open_max):
                return f"must be between {_num(lo)} and {_num(hi)}"
            left = f"above {_num(lo)}" if self.open_min else f"at least {_num(lo)}"
            right = f"below {_num(hi)}" if self.open_max else f"at most {_num(hi)}"
            return f"must be {left} and {right}"
        if lo is not None:
            if (lo == 0 and self.open_min) or (lo == 1 and self.kind is int and not self.open_min):
                return "must be a positive number"
            if lo == 0:
                return "must be zero or more"
            return f"must be above {_num(lo)}" if self.open_min else f"must be at least {_num(lo)}"
        if hi is not None:
            return f"must be below {_num(hi)}" if self.open_max else f"must be at most {_num(hi)}"
        return "must be a number"

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {'a whole number' if self.kind is int else 'a number'}, got {text!r}") from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if not self.accepts(value):
            raise argparse.ArgumentTypeError(f"{self.describe()}, got {text}")
        return value

    def __repr__(self) -> str:
        return f"bounded({self.kind.__name__}, {self.minimum}, {self.maximum})"


def bounded(kind: type, minimum: float | None = None, maximum: float | None = None, **kw: bool) -> Bounded:
    """A range-checked number for argparse: ``type=bounded(int, 0, 64)``."""
    return Bounded(kind, minimum, maximum, **kw)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Path:
    """``type=`` for a file or folder path (kept as text; exported as type ``path``)."""

    __name__ = "path"

    def __call__(self, text: str) -> str:
        return str(text)

    def __repr__(self) -> str:
        return "path"


#: ``type=path``: the option names a file or folder.
path = _Path()


class Names:
    """``type=`` for a name out of a list, or one starting with an accepted prefix.

    Exported with ``choices`` = the listed names (``clip:ARCH[:TAG]`` stays possible on the CLI).
    """

    __name__ = "name"

    def __init__(self, choices: Sequence[str], prefixes: Sequence[str] = ()) -> None:
        self.choices = tuple(choices)
        self.prefixes = tuple(prefixes)

    def __call__(self, text: str) -> str:
        if text in self.choices or (text.startswith(self.prefixes) and len(text) > max(map(len, self.prefixes), default=0)):
            return text
        extra = "".join(f" or {p}..." for p in self.prefixes)
        raise argparse.ArgumentTypeError(f"unknown name {text!r}; choose one of {', '.join(self.choices)}{extra}")

    def __repr__(self) -> str:
        return f"Names({self.choices})"


# -- what is published -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a command, as argparse declares it.

    Attributes:
        dest: argparse destination (``lora_rank``), the key of job values.
        flag: ``--lora-rank``; None for a positional argument.
        type: ``int``, ``float``, ``str``, ``bool`` (a bare flag) or ``path``.
        default: the engine's default (None = decided by the engine at run time, see ``help``).
        choices: the accepted values, or None.
        help: argparse's help text, defaults expanded.
        required: must be given.
        group: the argparse group title without its parenthesis (``model``), or None.
        minimum, maximum: inclusive bounds of numbers, or None.
    """

    dest: str
    flag: str | None
    type: str
    default: Any = None
    choices: tuple | None = None
    help: str = ""
    required: bool = False
    group: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["choices"] = list(self.choices) if self.choices is not None else None
        d["default"] = _jsonable(self.default)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Option":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("choices") is not None:
            kw["choices"] = tuple(kw["choices"])
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule between options (see the module docstring for the effects).

    Attributes:
        option: dest of the option the rule constrains.
        effect: ``default_only``, ``required`` or ``multiple_of``.
        when: option dest -> values under which the rule applies (all must match; None =
            the option's default).
        why: one line for the user: the engine's error, the dock's tooltip.
        multiple: the divisor of a ``multiple_of`` rule.
    """

    option: str
    effect: str
    when: Mapping[str, tuple]
    why: str
    multiple: int | None = None

    def __post_init__(self) -> None:
        if self.effect not in EFFECTS:
            raise ValueError(f"rule on {self.option}: unknown effect {self.effect!r}")
        object.__setattr__(self, "when", {k: tuple(v) for k, v in dict(self.when).items()})

    def applies(self, values: Mapping[str, Any]) -> bool:
        """``when`` matches ``values`` (complete: every dest present, defaults filled in)."""
        return all(_normal(values.get(key)) in allowed for key, allowed in self.when.items())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"option": self.option, "effect": self.effect,
                             "when": {k: [_jsonable(v) for v in vs] for k, vs in self.when.items()}, "why": self.why}
        if self.multiple is not None:
            d["multiple"] = self.multiple
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Rule":
        return cls(option=d["option"], effect=d["effect"], when={k: tuple(v) for k, v in (d.get("when") or {}).items()},
                   why=str(d.get("why") or ""), multiple=d.get("multiple"))


def _normal(value: Any) -> Any:
    """The value a rule compares: "" (an empty widget) is the same as None (not given)."""
    return None if value == "" else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Facts:
    """What rules depend on besides the values: backbones and this engine environment.

    Args:
        environment: the dict of :func:`environment`; empty when unknown (then no DINOv3
            weights count as found and the default backbone is the fallback).
    """

    def __init__(self, environment: Mapping[str, Any] | None = None) -> None:
        self.environment = dict(environment or {})
        self.backbones = BACKBONES

    @property
    def default_backbone(self) -> str:
        """The backbone a run uses when none is named and no weights are given."""
        name = self.environment.get("default_backbone")
        return name if name in BACKBONES else FALLBACK_BACKBONE

    def weights_found(self, name: str) -> str | None:
        """Weights of ``name`` found in this environment (a local folder), or None."""
        return (self.environment.get("weights_found") or {}).get(name)

    def backbone_values(self, name: str) -> tuple:
        """Values of ``backbone`` that mean ``name``: the name, and None when it is the default."""
        return (None, name) if name == self.default_backbone else (name,)


def environment(cuda: bool = True) -> dict[str, Any]:
    """Facts of this engine environment (imports torch for ``cuda``; a few seconds).

    Returns:
        ``{"cuda": bool (only with cuda=True), "onnxruntime": bool, "default_backbone": name,
        "dinov3_weights": folder the default DINOv3 backbone loads or None,
        "weights_found": {backbone: folder or None}, "weights_dir": folder searched}``.
    """
    from .inference.backend import onnxruntime_available
    from .models.dinov3 import ARCHS, find_local_weights, weights_dir
    from .models.registry import default_backbone

    found = {}
    for name in ARCHS:
        folder = find_local_weights(name)
        found[name] = str(folder) if folder is not None else None
    name, weights = default_backbone()
    env: dict[str, Any] = {
        "onnxruntime": bool(onnxruntime_available()),
        "default_backbone": name,
        "dinov3_weights": weights if name != FALLBACK_BACKBONE else None,
        "weights_found": found,
        "weights_dir": str(weights_dir()),
    }
    if cuda:
        try:
            import torch

            env["cuda"] = bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001 - a broken torch is reported as no CUDA; `info` says why
            env["cuda"] = False
    return env


# -- reading the argparse declarations ---------------------------------------------------------------
def command_module(name: str):
    """The module of command ``name`` (``engine.commands.<module>``), or None when not built."""
    from .commands import COMMANDS

    if name not in COMMANDS:
        raise KeyError(f"unknown command {name!r}; the engine has {', '.join(COMMANDS)}")
    package = __name__.rsplit(".", 1)[0]  # "engine", or "masktalk.engine" inside the plugin
    try:
        return importlib.import_module(f"{package}.commands.{COMMANDS[name]}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(f"commands.{COMMANDS[name]}"):
            return None
        raise


def command_parser(name: str) -> argparse.ArgumentParser:
    """A parser holding only ``name``'s own declarations (its ``configure``)."""
    module = command_module(name)
    if module is None:
        raise KeyError(f"the engine has no {name!r} command yet")
    parser = argparse.ArgumentParser(prog=f"python -m engine {name}", add_help=False)
    module.configure(parser)
    return parser


def options_of(parser: argparse.ArgumentParser) -> list[Option]:
    """The options a parser declares, in declaration order, without :data:`PLUMBING`."""
    groups = {}
    for group in parser._action_groups:  # noqa: SLF001 - argparse has no public accessor
        title = group.title or ""
        name = None if title in ("positional arguments", "optional arguments", "options") else title.split(" (")[0]
        for action in group._group_actions:  # noqa: SLF001
            groups[id(action)] = name
    out = []
    for action in parser._actions:  # noqa: SLF001
        if action.dest in PLUMBING or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):  # noqa: SLF001
            continue
        out.append(_option(parser, action, groups.get(id(action))))
    return out


def _option(parser: argparse.ArgumentParser, action: argparse.Action, group: str | None) -> Option:
    typ = action.type
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
        kind = "bool"
    elif isinstance(typ, Bounded):
        kind = typ.kind.__name__
    elif typ in (int, float):
        kind = typ.__name__
    elif typ is path:
        kind = "path"
    else:
        kind = "str"
    longs = [s for s in action.option_strings if s.startswith("--")]
    flag = (longs or list(action.option_strings) or [None])[0]
    choices = action.choices if action.choices is not None else getattr(typ, "choices", None)
    default = None if action.default is argparse.SUPPRESS else action.default
    return Option(
        dest=action.dest, flag=flag, type=kind, default=default,
        choices=tuple(choices) if choices is not None else None, help=_help(parser, action),
        required=bool(action.required), group=group,
        minimum=getattr(typ, "minimum", None), maximum=getattr(typ, "maximum", None),
    )


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """argparse's help text with ``%(default)s`` & co. expanded, as ``--help`` prints it."""
    text = action.help or ""
    if text is argparse.SUPPRESS:
        return ""
    params = dict(vars(action), prog=parser.prog)
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    try:
        return " ".join((text % params).split())
    except (KeyError, TypeError, ValueError):
        return " ".join(text.split())


def rules_of(name: str, facts: Facts | None = None) -> list[Rule]:
    """The rules command ``name`` declares (``rules(facts)`` beside its argparse declarations)."""
    module = command_module(name)
    declare = getattr(module, "rules", None)
    return list(declare(facts or Facts())) if declare is not None else []


def describe(with_environment: bool = False) -> dict[str, Any]:
    """Everything ``python -m engine options --json`` prints.

    Args:
        with_environment: also compute :func:`environment` (imports torch) and apply its
            facts to the rules (weights found, the default backbone); otherwise
            ``environment`` is ``{}`` and the rules assume nothing is found.
    """
    from . import __version__
    from .commands import COMMANDS

    env = environment() if with_environment else {}
    facts = Facts(env)
    commands: dict[str, Any] = {}
    for name in COMMANDS:
        module = command_module(name)
        if module is None or name in NOT_PUBLISHED:
            continue
        commands[name] = {
            "help": getattr(module, "HELP", ""),
            "options": [o.to_dict() for o in options_of(command_parser(name))],
            "rules": [r.to_dict() for r in rules_of(name, facts)],
        }
    backbones = {name: {**dataclasses.asdict(bb), "default": name == facts.default_backbone} for name, bb in BACKBONES.items()}
    return {"engine_version": __version__, "commands": commands, "backbones": backbones,
            "text_encoders": list(TEXT_ENCODERS), "environment": env}


# -- checking values against the rules (one implementation: the engine and the plugin) ---------------
def violations(options: Sequence[Option], rules: Iterable[Rule], values: Mapping[str, Any]) -> list[tuple[Rule, str]]:
    """The rules ``values`` break, each with its one-line message.

    Args:
        options: the command's options (their defaults fill the values not given).
        rules: the command's rules.
        values: dest -> value ("" and None = not given).
    """
    defaults = {o.dest: o.default for o in options}
    flags = {o.dest: o.flag or o.dest for o in options}
    full = {**defaults, **{k: _normal(v) for k, v in values.items()}}
    out = []
    for rule in rules:
        if not rule.applies(full):
            continue
        value = full.get(rule.option)
        if rule.effect == DEFAULT_ONLY and value != defaults.get(rule.option):
            out.append((rule, rule.why))
        elif rule.effect == REQUIRED and value is None:
            out.append((rule, rule.why))
        elif rule.effect == MULTIPLE_OF and rule.multiple and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value % rule.multiple:
            out.append((rule, f"{flags.get(rule.option, rule.option)} {_num(value)}: {rule.why}"))
    return out


def blocked(options: Sequence[Option], rules: Iterable[Rule], values: Mapping[str, Any]) -> dict[str, str]:
    """dest -> why for every option a ``default_only`` rule pins to its default at ``values``."""
    defaults = {o.dest: o.default for o in options}
    full = {**defaults, **{k: _normal(v) for k, v in values.items()}}
    return {r.option: r.why for r in rules if r.effect == DEFAULT_ONLY and r.applies(full)}


def check(command: str, values: Mapping[str, Any], facts: Facts | None = None) -> list[str]:
    """Every rule of ``command`` that ``values`` break, as messages (engine side).

    The command's ``effective(values)`` hook (when declared) first resolves what the
    engine decides at run time (e.g. the backbone used when none is named), so the
    rules see what will run. ``facts`` default to this environment's.
    """
    module = command_module(command)
    if getattr(module, "rules", None) is None:
        return []
    if facts is None:
        facts = Facts(environment(cuda=False))
    resolve = getattr(module, "effective", None)
    resolved = dict(resolve(dict(values)) if resolve is not None else values)
    return [message for _, message in violations(options_of(command_parser(command)), rules_of(command, facts), resolved)]


def enforce(command: str, values: Mapping[str, Any], facts: Facts | None = None) -> None:
    """Refuse ``values`` that break a rule of ``command``, before any work.

    Raises:
        InputError: the first broken rule's message (its ``why``).
    """
    problems = check(command, values, facts)
    if problems:
        raise InputError(problems[0])


# -- one-line option errors ------------------------------------------------------------------------------
def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make a command's option errors read like the engine's other user errors.

    ``error: --chip must be a positive number, got 0`` on stderr and exit code 2, plus
    an ``error`` event on stdout with ``--progress jsonl`` (what the plugin shows),
    instead of argparse's usage text.
    """

    def error(message: str):
        text = _rephrase(message)
        if _wants_jsonl(sys.argv[1:]):
            sys.stdout.write(json.dumps({"event": "error", "message": text, "kind": "InputError"}) + "\n")
            sys.stdout.flush()
        sys.stderr.write(f"error: {text}\n({parser.prog} --help lists the options)\n")
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def _rephrase(message: str) -> str:
    match = re.match(r"argument ([^:]+): (.*)", message, re.S)
    if not match:
        return message
    names = match.group(1).split("/")
    name = next((n for n in names if n.startswith("--")), names[0])
    rest = match.group(2)
    return f"{name} {rest}" if rest.startswith("must be") else f"{name}: {rest}"


def _wants_jsonl(argv: Sequence[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--progress=jsonl" or (arg == "--progress" and i + 1 < len(argv) and argv[i + 1] == "jsonl"):
            return True
    return False
