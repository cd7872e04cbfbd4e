"""Training on a tiny model: quiet stdout (progress goes to the log), checkpoints pruned after success, peak RSS."""

import time

import polars as pl
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
