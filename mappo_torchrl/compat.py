"""Every use of a private attribute of TorchRL (and of torch's TensorBoard writer).

The rest of the package calls these functions instead, so that a TorchRL
upgrade that renames or removes one of them touches this file only.
``tests/test_torchrl_workarounds.py`` pins each one against the installed
TorchRL (0.14): if a test there fails after an upgrade, the matching function
here is what to change.
"""

from __future__ import annotations

from queue import Empty
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.collectors import MultiAsyncCollector
from torchrl.modules import MultiAgentMLP
from torchrl.objectives import LossModule
from torchrl.objectives.value import MultiAgentGAE, ValueEstimatorBase

#: The attribute of a :class:`~torchrl.collectors.Collector` holding the
#: tensordict it acts on next (its carrier); a worker's is reached by this name.
CARRIER_ATTR = "_carrier"


def collector_carrier(collector) -> TensorDictBase:
    """The tensordict a :class:`~torchrl.collectors.Collector` acts on next.

    ``Collector.state_dict`` leaves it out (the last observation, running
    episode returns, step counts, recurrent states), so a checkpoint saves it
    itself (TorchRL: ``collector._carrier``).
    """
    return getattr(collector, CARRIER_ATTR)


def load_trajectory_ids(collector, state: dict[str, Any]) -> None:
    """Restore the collector's trajectory-id counter from ``state``.

    ``Collector.load_state_dict`` draws fresh trajectory ids for a new
    carrier; a restored carrier continues the saved trajectories, so the
    counter is put back (TorchRL: ``collector._traj_pool``).
    """
    collector._traj_pool.load_state_dict(state)


def set_value_estimator(loss: LossModule, estimator: ValueEstimatorBase) -> None:
    """Install ``estimator`` as ``loss.value_estimator``.

    ``loss.value_estimator = estimator`` is swallowed by
    ``nn.Module.__setattr__``, which registers a submodule and skips the
    property setter, so the setter is called explicitly.
    """
    type(loss).value_estimator.fset(loss, estimator)


def standardize_per_agent(
    gae: MultiAgentGAE, advantage: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """TorchRL's per-agent advantage standardisation over the ``active`` entries
    (``MultiAgentGAE._normalize_advantage``)."""
    return gae._normalize_advantage(advantage, active)


def agent_net_template(mlp: MultiAgentMLP) -> nn.Module:
    """The module a ``MultiAgentMLP``'s per-agent parameters fill in: its layer names
    (TorchRL: ``MultiAgentMLP._empty_net``)."""
    return mlp._empty_net


class WrappableMultiAgentMLP(MultiAgentMLP):
    """A ``MultiAgentMLP`` whose per-agent network a subclass may wrap.

    TorchRL builds each agent's network in the private ``_build_single_net``;
    a subclass overrides :meth:`wrap_agent_net` instead.
    """

    def wrap_agent_net(self, net: nn.Module, *, device) -> nn.Module:
        """The agent network to use in place of ``net`` (``net`` itself here)."""
        return net

    def _build_single_net(self, *, device, **kwargs) -> nn.Module:
        return self.wrap_agent_net(
            super()._build_single_net(device=device, **kwargs), device=device
        )


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (x86 avx512_bf16 or AMX tiles).

    torch asks oneDNN through the private ``torch.cpu._is_avx512_bf16_supported``
    and ``_is_amx_tile_supported``; there is no public query (torch 2.13).
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def tensorboard_file_writer(writer):
    """The event-file writer of a ``torch.utils.tensorboard.SummaryWriter``, for
    summaries ``SummaryWriter`` has no public method for (``_get_file_writer``)."""
    return writer._get_file_writer()


def output_queue(collector) -> Any:
    """The queue a multi-process collector's workers put their batches in, or ``None``.

    :class:`~torchrl.collectors.MultiAsyncCollector` keeps it as ``queue_out``;
    the overlapped trainer peeks at it (without taking from it) to know when the
    worker has finished its batch.
    """
    return getattr(collector, "queue_out", None)


def shutdown_weight_sync(collector) -> None:
    """Shut down the weight-sync schemes of a multi-process collector.

    TorchRL's ``shutdown()`` leaves them to their ``__del__``, which puts a
    message on a queue; for a collector that never sent weights, that starts the
    queue's feeder thread while the interpreter exits, and the program hangs
    there (torchrl 0.14.1; ``tests/test_torchrl_workarounds.py``). Shut down while
    the interpreter runs, ``__del__`` has nothing left to do.
    """
    for scheme in (getattr(collector, "_weight_sync_schemes", None) or {}).values():
        scheme.shutdown()


def ppo_current_log_prob(loss, tensordict) -> torch.Tensor:
    """``PPOLoss._get_cur_log_prob``: the stored action's log-probability under the
    loss's actor as it is now (the first of its three results)."""
    return loss._get_cur_log_prob(tensordict)[0]


def weight_ack_queue(collector, worker: int = 0) -> Any:
    """The queue on which a multi-process collector's ``worker`` acknowledges new weights.

    TorchRL's ``SharedMemWeightSyncScheme`` keeps one per worker
    (``_ack_queues``); with ``sync=True`` (its default) it waits there with no
    time limit, so a stopped worker would block the trainer for ever. The
    overlapped collector makes its scheme with ``sync=False`` and waits on this
    queue itself, a little at a time. ``None`` without such a scheme.
    """
    scheme = (getattr(collector, "_weight_sync_schemes", None) or {}).get("policy")
    return (getattr(scheme, "_ack_queues", None) or {}).get(worker)


class WatchableMultiAsyncCollector(MultiAsyncCollector):
    """A :class:`~torchrl.collectors.MultiAsyncCollector` whose wait for a batch a subclass
    can watch.

    TorchRL's iterator takes its workers' batches in the private
    ``_get_from_queue``, with a timeout of a second, and tries again for ever;
    here each timeout calls :meth:`still_waiting` first, which a subclass
    overrides (and which may raise to stop waiting).
    """

    def still_waiting(self) -> None:
        """Called each time a second has passed without a batch (nothing here)."""

    def _get_from_queue(self, timeout=None):
        try:
            return super()._get_from_queue(timeout=timeout)
        except (Empty, TimeoutError):
            self.still_waiting()
            raise
