"""Compression after training: fit a compact embedding to a finished ensemble's distances.

* :func:`compress_run`: post-hoc compression of a run (the paper's MLP or our direct head).
* :func:`distill_independent`: the independent ensemble (separately trained runs)
  distilled into one head on one backbone.
* :func:`train_student`: a teacher's distances (the independent or a shared ensemble)
  distilled into a whole new single-head network, trained end to end.

The compressor networks live in :mod:`lossensemble.models.compressor`, the objectives
in :mod:`lossensemble.losses.distance_matching`, joint training in
:mod:`lossensemble.training.joint`.
"""

from lossensemble.compression.distill import distill_independent
from lossensemble.compression.posthoc import compress_run
from lossensemble.compression.student import Teacher, train_student
from lossensemble.training.loading import COMPRESSED_CHECKPOINT, compressed_checkpoint_path

__all__ = ["COMPRESSED_CHECKPOINT", "Teacher", "compress_run", "compressed_checkpoint_path", "distill_independent",
           "train_student"]
