"""Train a few rows of a frozen embedding table (new speakers, a new language, added tokens) while the table stays
frozen: the rows are a small parameter that a forward hook puts in place of the table's own rows.

A gradient mask on the whole table gives the same updates, but it makes the table a trainable parameter: the
optimizer keeps Adam moments for all of it and LoRA checkpoints store it whole (the 151936 × 2048 text table is
1.2 GB of float32 weights plus 2.4 GB of moments, to train a few hundred rows). Here only the rows train, and only
they are checkpointed. ``fold_`` writes them into the table (exports, adapters); ``unhooked`` lifts the hook while a
copy is taken to merge LoRA into (a copy that keeps it would put the bare rows back over the merged LoRA delta).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class TrainedRows(nn.Module):
    """``rows`` of ``table`` as a trainable ``weight`` (len(rows), dim), starting from the table's values; a forward
    hook on the table returns them for those ids. The table's own weight is left as it is (frozen or not)."""

    def __init__(self, table: nn.Embedding, rows: Iterable[int]):
        super().__init__()
        rows = sorted(set(int(r) for r in rows))
        if not rows or rows[0] < 0 or rows[-1] >= table.num_embeddings:
            raise ValueError(f"rows must be ids of the {table.num_embeddings}-row table, got {rows[:5]}…")
        self.register_buffer("rows", torch.tensor(rows, dtype=torch.long, device=table.weight.device))
        self.weight = nn.Parameter(table.weight.detach()[self.rows].clone())
        lookup = torch.full((table.num_embeddings,), -1, dtype=torch.long, device=table.weight.device)
        lookup[self.rows] = torch.arange(len(rows), device=table.weight.device)
        self.register_buffer("lookup", lookup, persistent=False)
        self._table = [table]  # in a list: the table is the model's submodule, not this one's
        self._handle = None
        self.hook()

    @property
    def table(self) -> nn.Embedding:
        return self._table[0]

    def hook(self) -> None:
        if self._handle is None:
            self._handle = self.table.register_forward_hook(self._substitute)

    def unhook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _substitute(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        position = self.lookup[args[0]]
        rows = F.embedding(position.clamp(min=0), self.weight).to(output.dtype)
        return torch.where((position >= 0).unsqueeze(-1), rows, output)

    @torch.no_grad()
    def fold_(self) -> None:
        """Write the trained rows into the table (what exports and adapter folders read)."""
        self.table.weight[self.rows] = self.weight.detach().to(self.table.weight.dtype)


@contextmanager
def unhooked(rows: Iterable[TrainedRows]) -> Iterator[None]:
    """Fold every ``TrainedRows`` into its table and lift its hook for the block (to copy or merge the model)."""
    rows = list(rows)
    for r in rows:
        r.fold_()
        r.unhook()
    try:
        yield
    finally:
        for r in rows:
            r.hook()


PREFIX = "trained_rows."  # TalkerTask's ModuleDict of TrainedRows, by table name (``codec_embedding``, …)


@torch.no_grad()
def fold_saved_rows(model: nn.Module, task_state: dict[str, torch.Tensor]) -> list[str]:
    """Write the trained rows of a task's state dict (``trained_rows.<table>.rows`` / ``.weight``) into the tables
    of ``model.talker.model`` (under LoRA: their base layers); returns the tables written. A checkpoint is
    complete only with them: the tables themselves hold the starting rows."""
    names = sorted({k[len(PREFIX):].rsplit(".", 1)[0] for k in task_state if k.startswith(PREFIX)})
    for name in names:
        rows, weight = task_state.get(f"{PREFIX}{name}.rows"), task_state.get(f"{PREFIX}{name}.weight")
        table = getattr(model.talker.model, name, None)
        table = getattr(table, "base_layer", table)
        if rows is None or weight is None or not isinstance(table, nn.Embedding):
            raise ValueError(f"trained rows of {name!r} do not fit the model (rows, weight and an embedding table "
                             "are needed)")
        if weight.shape != (len(rows), table.embedding_dim) or int(rows.max()) >= table.num_embeddings:
            raise ValueError(f"trained rows of {name!r}: {tuple(weight.shape)} for rows up to {int(rows.max())}, "
                             f"table {tuple(table.weight.shape)}")
        table.weight[rows.long()] = weight.to(table.weight.dtype)
    return names
