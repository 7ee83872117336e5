"""One streaming protocol for every causal module: a model runs chunk by chunk, its state held by a ``Stream``.

A causal module (a conv that needs its left context, a transformer that needs its past keys) can take a sequence in
consecutive chunks if something carries, from one chunk to the next, what the next chunk needs. That something is
the module's *state*; this module decides who owns it:

* a ``StreamingModule`` declares the type of its state (a small dataclass, ``StreamState``) and makes one with
  ``init_state(batch_size, device, dtype)``; it never keeps a state on itself, so one loaded model serves any
  number of streams, from any number of threads;
* a ``Stream`` owns the states of every streaming module under a root module, for one batch of rows going
  through it; ``stream(x)`` runs the root on the next chunk, ``stream(x, last=True)`` on the last one (strided
  convs then pad the end as a whole-sequence pass does), ``stream.reset(rows)`` starts new sequences in some rows;
* during a call the stream is *active* in the current thread / asyncio task (a ``ContextVar``), and each module
  finds its state there (``self.stream_state``); with no active stream it runs the ordinary whole-sequence path.

Compared with moshi's ``StreamingModule`` (state on the module, ``streaming(model)`` flips every module), the
model stays immutable while streaming, the end of a stream is an argument of one call rather than a flag on shared
modules, and two streams never see each other's state.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Rows = Sequence[int] | torch.Tensor | None


class StreamState(abc.ABC):
    """The state one streaming module keeps for one stream (subclasses are dataclasses of tensors).

    Buffers whose shape does not change are allocated once and updated in place, so their addresses stay fixed
    (what a CUDA graph replaying a chunk needs)."""

    @abc.abstractmethod
    def reset(self, rows: Rows) -> None:
        """Start new sequences in ``rows`` (indices or a bool mask, see ``row_index``; None: every row)."""

    def why_not_restart_rows(self) -> str | None:
        """Why some rows cannot restart now while the others continue (None: they can)."""
        return None


class StreamingModule(nn.Module, abc.ABC):
    """A causal module that can run chunk by chunk, its state kept by the active ``Stream`` (never on itself).

    Subclasses implement ``init_state`` and, in ``forward``, read ``self.stream_state(x)`` (None: not streaming,
    run the whole sequence) and ``self.last_chunk`` (the call passes the stream's last chunk)."""

    @abc.abstractmethod
    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> StreamState:
        """A fresh state for ``batch_size`` rows."""

    def stream_state(self, x: torch.Tensor) -> StreamState | None:
        """This module's state in the stream active in this thread / task, made for the batch, device and dtype
        of its input ``x`` on first use; None when no stream is active (or the active one runs another model)."""
        call = _ACTIVE.get()
        return None if call is None else call.stream.state_of(self, x)

    @property
    def last_chunk(self) -> bool:
        """Whether the active stream's current call passes its last chunk."""
        call = _ACTIVE.get()
        return call is not None and call.last


@dataclass(frozen=True)
class _Call:
    stream: Stream
    last: bool


_ACTIVE: ContextVar[_Call | None] = ContextVar("qtts_active_stream", default=None)


class Stream:
    """The states of every ``StreamingModule`` under ``root`` for one stream of ``batch_size`` rows.

    States are made when first needed, for the batch size, device and dtype of the input that reaches each
    module (so one stream serves a decoder that takes integer codes and computes in float), or all at once when
    ``batch_size`` is given (preallocated before the first chunk). One stream is one sequence of calls: use one
    stream per thread; any number of streams may share ``root``.
    """

    def __init__(self, root: nn.Module, batch_size: int | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None):
        self.root, self.batch_size = root, batch_size
        self.modules = [m for m in root.modules() if isinstance(m, StreamingModule)]
        self.states: dict[StreamingModule, StreamState] = {}
        if batch_size is not None:
            param = next(root.parameters(), None)
            device = device if device is not None else (param.device if param is not None else "cpu")
            dtype = dtype if dtype is not None else (param.dtype if param is not None else torch.float32)
            self.states = {m: m.init_state(batch_size, torch.device(device), dtype) for m in self.modules}
        self._members = set(self.modules)

    def state_of(self, module: StreamingModule, x: torch.Tensor) -> StreamState | None:
        """``module``'s state, made for ``x`` on first use; None for a module outside ``root``."""
        if module not in self._members:
            return None
        state = self.states.get(module)
        if state is None:
            return self._make(module, x)
        if x.shape[0] != self.batch_size:
            raise ValueError(f"a stream of {self.batch_size} rows got a chunk of {x.shape[0]} rows")
        return state

    def __call__(self, *args: Any, last: bool = False, **kwargs: Any) -> Any:
        """``root(*args, **kwargs)`` on the next chunk; ``last=True``: the stream's last chunk (it may be empty)."""
        with self.active(last):
            return self.root(*args, **kwargs)

    @contextmanager
    def active(self, last: bool = False) -> Iterator[Stream]:
        """Within, calls in this thread / task run ``root``'s modules on this stream (for entry points other than
        ``forward``, e.g. ``encoder.encode``). Do not hold it open across a generator's ``yield``: the caller's
        code would run inside it."""
        token = _ACTIVE.set(_Call(self, last))
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def reset(self, rows: Rows = None) -> None:
        """Start new sequences in ``rows`` (indices or a bool mask; None: all), as if those rows began a fresh
        stream while the others continue. Raises ``ValueError``, changing nothing, where a module cannot restart
        some rows at this point of the stream."""
        if rows is not None:
            for module, state in self.states.items():
                reason = state.why_not_restart_rows()
                if reason is not None:
                    raise ValueError(f"cannot restart rows now: {type(module).__name__}: {reason}")
        for state in self.states.values():
            state.reset(rows)

    def _make(self, module: StreamingModule, x: torch.Tensor) -> StreamState:
        batch = x.shape[0]
        if self.batch_size is None:
            self.batch_size = batch
        if batch != self.batch_size:
            raise ValueError(f"a stream of {self.batch_size} rows got a chunk of {batch} rows")
        state = self.states[module] = module.init_state(batch, x.device, x.dtype)
        return state


def row_index(rows: Rows, device: torch.device) -> torch.Tensor | None:
    """``rows`` (indices or a bool mask) as a long index tensor on ``device``; None stays None."""
    if rows is None:
        return None
    rows = torch.as_tensor(rows, device=device)
    return rows.nonzero().flatten() if rows.dtype == torch.bool else rows.long().flatten()
