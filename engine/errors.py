"""Exceptions raised by the engine.

The hierarchy is small on purpose: the command line and the QGIS plugin translate
each kind into one user-facing message at a single boundary (``engine.cli``).

- :class:`InputError` -- the user gave something wrong (a file, a value, a schema).
  Shown without a traceback, exit code 2.
- :class:`ModelError` -- a checkpoint or a set of weights cannot be used.
- :class:`Cancelled` -- the user asked the job to stop; not a failure, exit code 130.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    exit_code = 1


class InputError(EngineError, ValueError):
    """Bad user input: say what is wrong, where, and how to fix it."""

    exit_code = 2


class ModelError(EngineError):
    """A model, checkpoint or weight file that cannot be used."""

    exit_code = 3


class Cancelled(EngineError):
    """The job was cancelled by the user (signal or progress callback)."""

    exit_code = 130
