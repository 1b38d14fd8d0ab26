"""Telling a run that learns from one that has gone wrong, once per iteration.

Two kinds of trouble, read from an iteration's metrics and its weights'
finiteness (:meth:`Trainer.iterations <mappo_torchrl.training.Trainer.iterations>`
gathers both in the iteration's one host transfer):

- **non-finite**: a loss term or a network's weights hold NaN or infinity.
  Nothing after that can be trained or resumed, so the run always stops,
  before the iteration is checkpointed (:class:`TrainingDiverged`);
- **divergence signals** that stay finite: a gradient norm that is infinite
  or NaN (clipping then zeroes the step, and the network stops learning), or
  an explained variance that is NaN (value targets or predictions that
  overflow). ``optim.divergence`` says what they do: ``stop`` the run,
  ``warn`` once per signal (the default), or nothing (``off``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

from mappo_torchrl.training.metrics import Metrics

#: Loss terms that must be finite in every iteration.
LOSS_TERMS = ("loss_objective", "loss_critic", "loss_entropy")
#: Finite-divergence signals: the metric, and the test that flags it.
SIGNALS = {
    "grad_norm_actor": "not finite",
    "grad_norm_critic": "not finite",
    "explained_variance": "NaN",
}


class TrainingDiverged(RuntimeError):
    """Training produced non-finite values (or, with ``optim.divergence stop``, a
    divergence signal); one line that names the values and the iteration."""


class DivergenceWarning(UserWarning):
    """A divergence signal under ``optim.divergence warn``."""


def check_divergence(
    metrics: Metrics,
    weights_finite: Mapping[str, bool],
    *,
    iteration: int,
    mode: str = "warn",
) -> None:
    """Raise :class:`TrainingDiverged` if the iteration's losses or weights are not finite.

    Args:
        metrics: the iteration's ``train/*`` metrics.
        weights_finite: whether each network's weights are finite, by name
            (``"agents actor"``).
        iteration: the iteration's number, for the message.
        mode: ``optim.divergence``: what a finite divergence signal does.

    Example:
        >>> check_divergence({"train/loss_critic": 0.5}, {"agents actor": True}, iteration=3)
        >>> check_divergence(
        ...     {"train/loss_critic": float("inf")}, {"agents actor": False}, iteration=3
        ... )
        Traceback (most recent call last):
        ...
        mappo_torchrl.training.divergence.TrainingDiverged: iteration 3: non-finite train/loss_critic (inf), agents actor weights; the iteration was not checkpointed
    """  # noqa: E501
    bad = [
        f"{name} ({value})"
        for name, value in metrics.items()
        if name.rsplit("/", 1)[-1] in LOSS_TERMS and not math.isfinite(value)
    ]
    bad += [f"{name} weights" for name, finite in weights_finite.items() if not finite]
    if bad:
        raise TrainingDiverged(
            f"iteration {iteration}: non-finite {', '.join(bad)}; the iteration was not "
            "checkpointed"
        )
    if mode == "off":
        return
    signals = [
        f"{name} {value}"
        for name, value in metrics.items()
        if name.rsplit("/", 1)[-1] in SIGNALS and not math.isfinite(value)
    ]
    if not signals:
        return
    what = f"iteration {iteration}: diverging ({', '.join(signals)})"
    if mode == "stop":
        raise TrainingDiverged(f"{what}; optim.divergence is stop")
    warnings.warn(
        f"{what}; set optim.divergence stop to end such a run, or off to silence this",
        DivergenceWarning,
        stacklevel=2,
    )
