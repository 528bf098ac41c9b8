"""``toysae check``: an SAE file checked on activation files, and the files it writes.

An application of the optimality conditions (``toysae.theory``) to files on
disk: :func:`check_sae_files` loads an SAE through ``toysae.interop`` and
streams the activations through theory's two-pass checks (``files.py``);
:func:`save_check` writes the report's JSON and its figure (``figure.py``). It
sits beside ``toysae.experiments``, above ``theory`` and ``interop`` and below
the CLI, so that ``theory`` needs nothing from ``interop``.
"""

from toysae.check.figure import save_check
from toysae.check.files import SAEFileReport, check_sae_files

__all__ = ["SAEFileReport", "check_sae_files", "save_check"]
