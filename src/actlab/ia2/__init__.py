"""IA2 (ICL Activation Alignment): targets, training, sweeps (evaluation lives in ``evaluate``/``plots``/...).

    from actlab.ia2 import IA2TrainConfig, train, sweep
"""

from actlab.ia2.config import METHODS, SEED_METHODS, IA2TrainConfig


def train(cfg, model=None, tok=None, return_model: bool = False):
    """See :func:`actlab.ia2.trainer.train`."""
    from actlab.ia2.trainer import train as _train

    return _train(cfg, model=model, tok=tok, return_model=return_model)


def sweep(cfg):
    """See :func:`actlab.ia2.sweep.sweep`."""
    from actlab.ia2.sweep import sweep as _sweep

    return _sweep(cfg)


__all__ = ["METHODS", "SEED_METHODS", "IA2TrainConfig", "sweep", "train"]
