"""The student's loss: InfoNCE that never counts a query's known positive as its negative, plus optional distillation.

sentence-transformers' MultipleNegativesRankingLoss (and its cached twin) treats every in-batch document other than
the row's own positive as a negative. A query with several positives (Cranfield: ~8) meets its other positives in
the batch as another example's positive or hard negative; the no-duplicates sampler only rejects identical texts,
and under DDP it deduplicates each worker's slice, so such pairs also meet after the gather. Here the similarity of
a query to any in-batch document that is a known positive of that query (other than its own positive column) is
-inf: that column leaves the softmax. Documents are identified by text, so a duplicate of a positive under another
id is masked too. Each dataset row carries its example index as `label` (the trainer passes labels, not texts, to
the loss); under DDP the labels are gathered in rank order like the embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from sentence_transformers.sentence_transformer import losses
from sentence_transformers.util import all_gather, cos_sim, get_rank, pairwise_cos_sim

Distill = Literal["none", "marginmse", "kldiv"]


class ExampleTable:
    """Per training example (by its index over all groups in order): the text keys of its anchor and documents,
    the known (query, positive) pairs, and the teacher scores of its positive and negatives (for distillation)."""

    def __init__(self, groups: dict[int, list[dict[str, str]]],
                 teacher_scores: dict[int, list[list[float]]] | None = None):
        queries: dict[str, int] = {}
        docs: dict[str, int] = {}
        rows = [row for m in groups for row in groups[m]]
        width = 2 + max(groups, default=0)
        self.keys = torch.full((len(rows), width), -1, dtype=torch.long)  # (examples, anchor + positive + m)
        known = set()
        for i, row in enumerate(rows):
            texts = [row["positive"], *(row[f"negative_{j}"] for j in range(1, len(row) - 1))]
            keys = [queries.setdefault(row["anchor"], len(queries))] + [docs.setdefault(t, len(docs)) for t in texts]
            self.keys[i, :len(keys)] = torch.tensor(keys)
            known.add((keys[0], keys[1]))
        self.n_docs = max(len(docs), 1)
        self.known = torch.tensor(sorted(q * self.n_docs + d for q, d in known), dtype=torch.long)
        self.scores = None
        if teacher_scores is not None:
            self.scores = torch.full((len(rows), width - 1), float("nan"))  # (examples, positive + m)
            flat = [s for m in groups for s in teacher_scores[m]]
            if len(flat) != len(rows):
                raise ValueError(f"{len(flat)} rows of teacher scores for {len(rows)} training examples")
            for i, s in enumerate(flat):
                self.scores[i, :len(s)] = torch.tensor(s, dtype=torch.float32)

    def known_positive_mask(self, index: torch.Tensor, offset: int, rows: int, columns: int) -> torch.Tensor:
        """(rows, columns x batch) True where the document is a known positive of the row's query and not the row's
        own positive. `index`: the examples of the (gathered) batch; rows `offset..offset+rows` are this worker's;
        documents are column-major (every example's positive, then every example's negative_1, ...), as the loss
        concatenates them."""
        keys = self.keys[index.cpu()]  # (batch, width)
        anchors = keys[offset:offset + rows, 0]  # (rows,)
        docs = keys[:, 1:1 + columns].T.reshape(-1)  # (columns * batch,)
        mask = torch.isin(anchors[:, None] * self.n_docs + docs[None, :], self.known) & (docs >= 0)[None, :]
        own = torch.arange(rows)
        mask[own, offset + own] = False
        return mask

    def teacher_scores(self, index: torch.Tensor, columns: int) -> torch.Tensor:
        """(batch, columns) teacher scores of each example's positive and negatives."""
        return self.scores[index.cpu(), :columns]


class _MaskedSimilarity:
    """cos_sim whose query-to-document scores get -inf where the mask of the current batch says so.

    The loss calls it once per block of query rows, in order (all rows for MNRL, `mini_batch_size` rows at a time
    for the cached loss), against every document of the batch; the cursor walks the mask's rows along."""

    def __init__(self):
        self.mask: torch.Tensor | None = None
        self.row = 0

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        scores = cos_sim(a, b)
        if self.mask is None:
            return scores
        if b.size(0) != self.mask.size(1) or self.row + a.size(0) > self.mask.size(0):
            raise RuntimeError(f"similarity of {a.size(0)} x {b.size(0)} does not fit the batch's known-positive mask "
                               f"{tuple(self.mask.shape)} at row {self.row}: only the query_to_doc direction is masked")
        rows = self.mask[self.row:self.row + a.size(0)].to(scores.device)
        self.row += a.size(0)
        return scores.masked_fill(rows, float("-inf"))


class _KnownPositives:
    """What the two InfoNCE losses below share: the known-positive mask around the library's loss, and the
    distillation term on the InfoNCE logit scale (scores / tau)."""

    table: ExampleTable
    mask_known_positives: bool
    _similarity: _MaskedSimilarity
    distill_loss: torch.nn.Module | None
    distill_weight: float

    def _setup(self, model, table: ExampleTable, distill: Distill, distill_weight: float, mask: bool) -> None:
        self.table, self.distill_weight, self.mask_known_positives = table, distill_weight, mask
        self.distill_loss = None
        if distill == "marginmse":
            self.distill_loss = losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
        elif distill == "kldiv":
            self.distill_loss = losses.DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim,
                                                        temperature=1.0 / self.scale)
        elif distill != "none":
            raise ValueError(f"distill must be none, marginmse or kldiv, not {distill!r}")
        if self.distill_loss is not None and table.scores is None:
            raise ValueError(f"distill {distill!r} needs the teacher scores of every training example")

    @contextmanager
    def _masked(self, labels: torch.Tensor | None, rows: int, columns: int) -> Iterator[None]:
        if not self.mask_known_positives:
            yield
            return
        if labels is None:
            raise ValueError("the loss needs each example's index as its label (core.training.training_datasets)")
        index, offset = labels.long().view(-1), 0
        if self.gather_across_devices:  # the same rank order as the gathered embeddings
            index, offset = all_gather(index), get_rank() * rows
        self._similarity.mask = self.table.known_positive_mask(index, offset, rows, columns)
        self._similarity.row = 0
        try:
            yield
        finally:
            self._similarity.mask = None

    def _distill(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor | None:
        """weight x the teacher-score loss over (positive, negatives) of this worker's examples, in logits (score x
        scale): MarginMSE on the margins s(q, d+) - s(q, d-), or KL(teacher || student) at temperature tau (the
        library multiplies it by tau^2, undone here). None for examples without a mined negative."""
        if self.distill_loss is None or len(embeddings) < 3:
            return None
        teacher = self.table.teacher_scores(labels.long().view(-1), len(embeddings) - 1).to(embeddings[0].device)
        return self.distill_weight * self.scale ** 2 * self.distill_loss.compute_loss_from_embeddings(
            embeddings, teacher)


class KnownPositiveMNRL(_KnownPositives, losses.MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss (InfoNCE, scale 1/tau) with known positives masked, + optional distillation."""

    def __init__(self, model, table: ExampleTable, *, scale: float, gather_across_devices: bool = False,
                 distill: Distill = "none", distill_weight: float = 1.0, mask_known_positives: bool = True):
        similarity = _MaskedSimilarity()
        super().__init__(model, scale=scale, similarity_fct=similarity, gather_across_devices=gather_across_devices)
        self._similarity = similarity
        self._setup(model, table, distill, distill_weight, mask_known_positives)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        with self._masked(labels, rows=embeddings[0].size(0), columns=len(embeddings) - 1):
            loss = super().compute_loss_from_embeddings(embeddings, labels)
        extra = self._distill(embeddings, labels)
        return loss if extra is None else loss + extra


class KnownPositiveCachedMNRL(_KnownPositives, losses.CachedMultipleNegativesRankingLoss):
    """CachedMultipleNegativesRankingLoss (GradCache: the same loss over chunks of `mini_batch_size` texts) with
    known positives masked, + optional distillation (its gradient joins the cache like the InfoNCE one)."""

    def __init__(self, model, table: ExampleTable, *, scale: float, mini_batch_size: int,
                 gather_across_devices: bool = False, distill: Distill = "none", distill_weight: float = 1.0,
                 mask_known_positives: bool = True):
        similarity = _MaskedSimilarity()
        super().__init__(model, scale=scale, similarity_fct=similarity, mini_batch_size=mini_batch_size,
                         gather_across_devices=gather_across_devices)
        self._similarity = similarity
        self._setup(model, table, distill, distill_weight, mask_known_positives)

    def calculate_loss(self, reps: list[list[torch.Tensor]], labels: torch.Tensor | None = None, *,
                       with_backward: bool = False) -> torch.Tensor:
        with self._masked(labels, rows=sum(len(r) for r in reps[0]), columns=len(reps) - 1):
            loss = super().calculate_loss(reps, labels, with_backward=with_backward)
        extra = self._distill([torch.cat(r) for r in reps], labels)
        if extra is None:
            return loss
        if with_backward:  # the cached embeddings' gradients then hold both terms
            extra.backward()
            extra = extra.detach()
        return loss + extra
