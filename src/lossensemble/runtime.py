"""Process-wide settings, set in one explicit place at the edge of a program.

The library's classes never change global state when they are constructed: torch's
thread count, the process group of a ``torchrun`` launch and the log level are set
here, by the CLI and the experiment runner (or by a user's own script), once per
process. Seeding for reproducibility is done by the trainer inside ``fit()`` (each
epoch re-seeds its own random streams) and around model construction with a forked
RNG, so creating a ``Trainer`` leaves the caller's random state untouched.
"""

from __future__ import annotations

import logging
import random

__all__ = ["resolve_device", "set_threads", "seed_everything", "configure_logging", "prepare_process"]


def resolve_device(name: str):
    """``auto`` picks CUDA when available, else CPU; an unknown or unavailable device is a one-line error."""
    import torch

    from lossensemble.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: {name} asked for but CUDA is not available (use cpu or auto)")
    return device


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count (``None``: leave it as it is)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global random generators."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def configure_logging(debug: bool = False, is_main: bool = True) -> None:
    """The CLI's logging: INFO (DEBUG with ``--debug``) on stderr; other ranks than 0 only warn."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not is_main:
        logging.getLogger("lossensemble").setLevel(logging.WARNING)


def prepare_process(cfg):
    """What a program does once before training ``cfg``: threads, and the torchrun process group.

    Returns the :class:`~lossensemble.distributed.DistContext` to give the trainer.
    """
    from lossensemble import distributed

    set_threads(cfg.train.threads)
    ctx = distributed.setup_from_env(resolve_device(cfg.train.device))
    if not ctx.is_main:
        logging.getLogger("lossensemble").setLevel(logging.WARNING)
    return ctx
