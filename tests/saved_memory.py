"""A probe for activation memory in tests: peak bytes autograd holds for backward."""

from __future__ import annotations

import weakref

import torch


class _Held:
    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class SavedBytes:
    """Within ``with SavedBytes() as probe``: ``probe.peak``, the most bytes of saved tensors
    alive at once (each saving counted, released when autograd frees it)."""

    def __enter__(self) -> SavedBytes:
        self.live = self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> _Held:
        held, size = _Held(tensor), tensor.numel() * tensor.element_size()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(held, self._release, size)
        return held

    def _release(self, size: int) -> None:
        self.live -= size

    @staticmethod
    def _unpack(held: _Held) -> torch.Tensor:
        return held.tensor
