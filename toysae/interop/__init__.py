"""Other tools' file formats (docs/interop.md).

SAELens's SAE directory, both ways: :func:`export_saelens` writes a toysae SAE
as the directory ``sae_lens.SAE.load_from_disk`` reads; :func:`load_saelens`
reads such a directory into the toysae SAE that computes the same thing.
:func:`load_sae` takes either a toysae checkpoint file or a SAELens directory;
:func:`load_sae_with_info` also returns an :class:`SAEInfo` with the recorded
training coefficient. None of this needs the ``sae-lens`` package.

SAELens's synthetic worlds as toysae ground truth: :class:`SAELensWorld` (and
:func:`synth_sae_bench_config`, SynthSAEBench-16k's published configuration); these need
``sae-lens`` (the ``dev`` extra), imported only when they are used.
"""

from toysae.interop.loading import SAEInfo, load_sae, load_sae_with_info
from toysae.interop.saelens import (
    SAELENS_VERSION,
    SAELensImport,
    export_saelens,
    load_saelens,
    read_saelens,
)
from toysae.interop.saelens_worlds import SAELensWorld, synth_sae_bench_config

__all__ = ["SAELENS_VERSION", "SAEInfo", "SAELensImport", "SAELensWorld", "export_saelens",
           "load_sae", "load_sae_with_info", "load_saelens", "read_saelens",
           "synth_sae_bench_config"]
