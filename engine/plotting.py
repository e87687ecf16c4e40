"""Headless matplotlib for the engine's plots (training curves, demo preview)."""

from __future__ import annotations

import warnings


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    The engine environment is made with ``--system-site-packages``, so Debian's
    ``mpl_toolkits`` (built for its own matplotlib) sits beside the venv's matplotlib and
    its 3D import warns on every first import; the engine draws no 3D plots.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unable to import Axes3D")
        import matplotlib.pyplot as plt
    return plt
