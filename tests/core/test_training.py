"""Training on a tiny model: quiet stdout (progress goes to the log), checkpoints pruned after success, peak RSS."""

import time

import polars as pl
import pytest
from sentence_transformers import SentenceTransformer

from retriever_assets.core.training import PeakRss, TrainingSettings, build_training_examples, fine_tune_student


def _groups():
    queries = {f"q{i}": f"question number {i} about topic {i % 5}" for i in range(24)}
    docs = {f"d{i}": f"a passage about topic {i % 5}, fact number {i}" for i in range(40)}
    positives = pl.DataFrame({"query_id": list(queries), "doc_id": [f"d{i}" for i in range(24)]})
    negatives = pl.DataFrame({"query_id": list(queries), "slot": [1] * 24, "doc_id": [f"d{i + 10}" for i in range(24)]})
    return build_training_examples(negatives, positives, queries, docs)


def test_training_is_quiet_prunes_checkpoints_and_reports_peak_memory(tiny_encoder, tmp_path, capsys):
    messages: list[str] = []
    model = SentenceTransformer(str(tiny_encoder), device="cpu")
    outcome = fine_tune_student(model, _groups(), TrainingSettings(batch_size=4, max_seq_length=32, save_steps=2),
                                tmp_path / "student", base_identity="tiny", log=messages.append)
    out = capsys.readouterr().out
    assert "{'loss'" not in out and "'train_runtime'" not in out  # no raw trainer dicts on stdout
    assert any(m.startswith("step ") and "loss" in m for m in messages)  # progress reaches the log instead
    assert (tmp_path / "student" / "model").is_dir()
    assert not (tmp_path / "student" / "trainer").exists()  # checkpoints removed once the model is saved
    assert outcome.checkpoint_bytes_removed > 0 and outcome.steps == 6
    assert outcome.peak_rss_bytes > 50 * 2**20
    assert any("removed" in m and "checkpoints" in m for m in messages)


def test_peak_rss_sees_a_short_lived_allocation():
    with PeakRss(interval=0.01) as rss:
        baseline = PeakRss.current()
        block = bytearray(200 * 2**20)  # 200 MiB, touched
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.3)  # held long enough for the sampler to be scheduled even on a busy machine
        del block
    assert rss.peak >= baseline + 150 * 2**20


# ----------------------------------------------------------------- in-batch false negatives (issue 27 item 4)

# qa has two positives (d1, d2); qb's hard negative is qa's positive d2. A batch holding (qa, d1) and qb's example
# must not push qa away from d2: it is a known positive of qa, not a negative.
FN_QUERIES = {"qa": "where is the old mill", "qb": "who runs the ferry", "qc": "when does the market open"}
FN_DOCS = {"d1": "the old mill stands by the river", "d2": "the mill was built near the bridge",
           "d3": "the ferry is run by the harbour board", "d4": "the market opens at eight",
           "d5": "the bakery sells bread", "d6": "the school has two classes", "d7": "the church bell rings"}
FN_POSITIVES = {"qa": {"d1", "d2"}, "qb": {"d3"}, "qc": {"d4"}}


def _fn_groups():
    positives = pl.DataFrame({"query_id": ["qa", "qa", "qb", "qc"], "doc_id": ["d1", "d2", "d3", "d4"]})
    negatives = pl.DataFrame({"query_id": ["qa", "qb", "qc"], "slot": [1, 1, 1], "doc_id": ["d5", "d2", "d7"]})
    return build_training_examples(negatives, positives, FN_QUERIES, FN_DOCS)


def _collate(model, rows):
    """The trainer's path: the data collator tokenizes each column and hands the `label` column to the loss."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    batch = SentenceTransformerDataCollator(preprocess_fn=model.preprocess)(rows)
    columns = [c for c in rows[0] if c != "label"]
    return [{k[len(c) + 1:]: v for k, v in batch.items() if k.startswith(c + "_")} for c in columns], batch["label"]


def _reference_loss(model, rows, local: range, scale: float) -> float:
    """Plain InfoNCE over the whole batch (column-major, as sentence-transformers concatenates the columns), with
    every column that holds a known positive of the row's query other than its own positive left out."""
    import torch

    text_to_query = {t: q for q, t in FN_QUERIES.items()}
    text_to_doc = {t: d for d, t in FN_DOCS.items()}
    columns = [c for c in rows[0] if c not in ("anchor", "label")]
    docs = [r[c] for c in columns for r in rows]  # positives of every row, then negative_1 of every row, ...
    q = torch.tensor(model.encode([rows[i]["anchor"] for i in local]))
    d = torch.tensor(model.encode(docs))
    scores = scale * (q @ d.T)  # normalized embeddings: cosines
    losses = []
    for row, i in enumerate(local):
        known = FN_POSITIVES[text_to_query[rows[i]["anchor"]]]
        keep = [j for j, text in enumerate(docs) if j == i or text_to_doc[text] not in known]
        losses.append(torch.logsumexp(scores[row, keep], 0) - scores[row, i])
    return float(torch.stack(losses).mean())


def _batch_rows(order: list[int]):
    from retriever_assets.core.training import training_datasets

    [dataset] = training_datasets(_fn_groups()).values()
    rows = dataset.to_list()
    return [rows[i] for i in order]


@pytest.mark.parametrize("mini_batch_size", [None, 2])  # plain MNRL, and the cached loss over chunks of 2 rows
def test_a_known_positive_of_the_query_is_never_its_in_batch_negative(tiny_encoder, mini_batch_size):
    import torch

    from retriever_assets.core.training import student_loss

    model = SentenceTransformer(str(tiny_encoder), device="cpu").eval()
    settings = TrainingSettings(mini_batch_size=mini_batch_size)
    loss = student_loss(model, _fn_groups(), settings)
    rows = _batch_rows([0, 2, 3])  # (qa, d1, d5), (qb, d3, d2), (qc, d4, d7): d2 is a positive of qa
    assert rows[0]["positive"] == FN_DOCS["d1"] and rows[1]["negative_1"] == FN_DOCS["d2"]
    features, labels = _collate(model, rows)
    with torch.no_grad():
        got = float(loss(features, labels))
    assert got == pytest.approx(_reference_loss(model, rows, range(3), 1 / settings.temperature), abs=1e-5)
    # and not the unmasked InfoNCE, which counts d2 against qa
    plain = losses_unmasked(model, settings)
    with torch.no_grad():
        assert abs(float(plain(features, labels)) - got) > 1e-3


def losses_unmasked(model, settings):
    from sentence_transformers.sentence_transformer import losses

    return losses.MultipleNegativesRankingLoss(model, scale=1 / settings.temperature)


def _ddp_worker(rank: int, world: int, port: int, model_dir: str, order: list[int], out: str, mini,
                distill: str = "none") -> None:
    import json as json_
    import os

    import torch
    import torch.distributed as dist

    from retriever_assets.core.training import student_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = SentenceTransformer(model_dir, device="cpu").eval()
        settings = TrainingSettings(mini_batch_size=mini, distill=distill, distill_weight=0.5)
        teacher = _fn_teacher_scores()
        loss = student_loss(model, _fn_groups(), settings, teacher_scores=teacher)  # world > 1: gathers
        rows = _batch_rows(order)
        local = range(rank * len(rows) // world, (rank + 1) * len(rows) // world)
        features, labels = _collate(model, [rows[i] for i in local])
        with torch.no_grad():
            got = float(loss(features, labels))
        ref = _reference_loss(model, rows, local, 1 / settings.temperature)
        if distill != "none":  # the distillation term is per example: this worker's rows only
            mine = [rows[i] for i in local]
            ref += 0.5 * _reference_distill(model, mine, [order[i] for i in local], distill, 1 / settings.temperature)
        with open(f"{out}/{rank}.json", "w") as fh:
            json_.dump({"got": got, "reference": ref}, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("mini_batch_size", "distill"), [(None, "none"), (2, "kldiv")])  # plain; cached + distill
def test_known_positives_are_masked_after_the_ddp_gather(tiny_encoder, tmp_path, mini_batch_size, distill):
    """Each DDP worker deduplicates only its own slice: (qa, d1) on worker 0 and (qa, d2) on worker 1 meet after
    the gather, and neither may count the other's positive as a negative."""
    import json as json_
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    order = [0, 3, 1, 2]  # worker 0: (qa, d1), (qc, d4); worker 1: (qa, d2), (qb, d3, neg d2)
    mp.spawn(_ddp_worker, args=(2, port, str(tiny_encoder), order, str(tmp_path), mini_batch_size, distill),
             nprocs=2)
    for rank in range(2):
        result = json_.loads((tmp_path / f"{rank}.json").read_text())
        assert result["got"] == pytest.approx(result["reference"], abs=1e-5), rank


# ----------------------------------------------------------------- distillation beside InfoNCE (issue 23)

def _fn_teacher_scores() -> dict[int, list[list[float]]]:
    """Made-up teacher scores (positive, negative) of each example of `_fn_groups` (all in group 1)."""
    return {m: [[0.8 - 0.1 * i, 0.3 + 0.1 * i] for i in range(len(rows))] for m, rows in _fn_groups().items()}


def _reference_distill(model, rows, examples: list[int], distill: str, scale: float) -> float:
    """MarginMSE on the logit margins, or KL(teacher || student) at tau, over the rows' positive and negative."""
    import torch

    q, p, n = (torch.tensor(model.encode([r[c] for r in rows])) for c in ("anchor", "positive", "negative_1"))
    student = scale * torch.stack([(q * p).sum(1), (q * n).sum(1)], 1)  # (batch, positive + negative)
    target = scale * torch.tensor([_fn_teacher_scores()[1][i] for i in examples])
    if distill == "marginmse":
        return float((((student[:, 0] - student[:, 1]) - (target[:, 0] - target[:, 1])) ** 2).mean())
    t = target.softmax(1)
    return float((t * (t.log() - student.log_softmax(1))).sum(1).mean())


@pytest.mark.parametrize("distill", ["marginmse", "kldiv"])
@pytest.mark.parametrize("mini_batch_size", [None, 2])
def test_distillation_adds_the_weighted_teacher_score_loss_to_infonce(tiny_encoder, distill, mini_batch_size):
    """loss = masked InfoNCE + weight x (MarginMSE on the logit margins, or KL(teacher || student) at tau) over each
    example's positive and negatives, teacher scores looked up by the example's label."""
    import torch

    from retriever_assets.core.training import student_loss

    model = SentenceTransformer(str(tiny_encoder), device="cpu").eval()
    groups = _fn_groups()
    teacher = _fn_teacher_scores()
    settings = TrainingSettings(mini_batch_size=mini_batch_size, distill=distill, distill_weight=0.5)
    combined = student_loss(model, groups, settings, teacher_scores=teacher)
    infonce = student_loss(model, groups, TrainingSettings(mini_batch_size=mini_batch_size))
    order = [0, 2, 3]
    rows = _batch_rows(order)
    features, labels = _collate(model, rows)
    with torch.no_grad():
        got, plain = float(combined(features, labels)), float(infonce(features, labels))
    reference = _reference_distill(model, rows, order, distill, 1 / settings.temperature)
    assert got == pytest.approx(plain + 0.5 * reference, abs=1e-4)
    assert abs(got - plain) > 1e-3


def test_teacher_scores_line_up_with_the_training_examples():
    from retriever_assets.core.training import build_teacher_scores

    positives = pl.DataFrame({"query_id": ["qa", "qa", "qb", "qc"], "doc_id": ["d1", "d2", "d3", "d4"]})
    negatives = pl.DataFrame({"query_id": ["qa", "qa", "qb"], "slot": [2, 1, 1], "doc_id": ["d6", "d5", "d2"],
                              "score": [0.4, 0.5, 0.6]})
    pos_scores = pl.DataFrame({"query_id": ["qa", "qa", "qb", "qc"], "doc_id": ["d1", "d2", "d3", "d4"],
                               "score": [0.9, 0.8, 0.7, 0.65]})
    groups = build_training_examples(negatives, positives, FN_QUERIES, FN_DOCS)
    scores = build_teacher_scores(negatives, positives, pos_scores)
    assert list(scores) == list(groups) == [2, 1, 0]
    assert [len(r) for r in scores.values()] == [len(r) for r in groups.values()]
    assert scores[2] == [pytest.approx([0.9, 0.5, 0.4]), pytest.approx([0.8, 0.5, 0.4])]  # slot order, per positive
    assert groups[2][0]["negative_1"] == FN_DOCS["d5"] and scores[1] == [pytest.approx([0.7, 0.6])]
    assert scores[0] == [pytest.approx([0.65])]  # no negative: nothing to distil
    with pytest.raises(ValueError, match="no teacher score for query 'qc'"):
        build_teacher_scores(negatives, positives, pos_scores.filter(pl.col("query_id") != "qc"))
