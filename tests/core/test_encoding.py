"""Embedding cache keys and incremental plans."""

import dataclasses

import numpy as np
import polars as pl

from retriever_assets.core.encoding import (
    EncoderSpec,
    embed_in_chunks,
    embedding_cache_key,
    model_fingerprint,
    plan_embedding_update,
)


def test_cache_key_changes_with_everything_that_changes_a_vector():
    spec = EncoderSpec(name="t", model="m")
    base = embedding_cache_key(spec, "fp", "document")
    variants = [
        embedding_cache_key(spec, "fp2", "document"),
        embedding_cache_key(spec, "fp", "query"),
        embedding_cache_key(dataclasses.replace(spec, document_prompt="passage: "), "fp", "document"),
        embedding_cache_key(dataclasses.replace(spec, max_seq_length=128), "fp", "document"),
        embedding_cache_key(dataclasses.replace(spec, normalize=False), "fp", "document"),
        embedding_cache_key(dataclasses.replace(spec, revision="abc"), "fp", "document"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # a query prompt does not change document vectors; the teacher's display name changes nothing
    assert embedding_cache_key(dataclasses.replace(spec, query_prompt="q: "), "fp", "document") == base
    assert embedding_cache_key(dataclasses.replace(spec, name="other"), "fp", "document") == base


def test_model_fingerprint_follows_content(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    first = model_fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert model_fingerprint(str(tmp_path)) != first


def test_a_hub_model_is_fingerprinted_by_the_snapshot_it_loads_never_by_a_moving_ref(tmp_path, monkeypatch):
    import pytest

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    # not in the local cache: `main` (or a tag) says nothing about the weights, so nothing is keyed by it
    with pytest.raises(ValueError, match="moving ref 'main'.*not in the local Hugging Face cache"):
        model_fingerprint("org/model")
    with pytest.raises(ValueError, match="moving ref 'v1'"):
        model_fingerprint("org/model", "v1")
    commit = "a" * 40
    assert model_fingerprint("org/model", commit) == f"org/model@{commit}"  # a commit names the weights

    repo = hub / "models--org--model"

    def publish(sha: str, ref: str = "main") -> None:
        (repo / "snapshots" / sha).mkdir(parents=True)
        (repo / "snapshots" / sha / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(sha)

    publish("1" * 40)
    assert model_fingerprint("org/model") == "org/model@" + "1" * 40  # the snapshot `main` resolves to here
    publish("2" * 40)  # main moved: new weights, a new fingerprint
    assert model_fingerprint("org/model") == "org/model@" + "2" * 40
    publish("3" * 40, ref="v1")
    assert model_fingerprint("org/model", "v1") == "org/model@" + "3" * 40
    # a bare name resolves like sentence-transformers resolves it
    repo = hub / "models--sentence-transformers--tiny"
    publish("4" * 40)
    assert model_fingerprint("tiny") == "tiny@" + "4" * 40


def test_plan_embeds_only_new_or_changed_and_deletes_removed():
    current = pl.DataFrame({"item_id": ["d:1", "d:2", "d:3", "q:1"], "role": ["document"] * 3 + ["query"],
                            "content_hash": ["a", "b2", "c", "qa"], "text": ["x"] * 4})
    stored = pl.DataFrame({"item_id": ["d:1", "d:2", "d:9", "q:1"], "content_hash": ["a", "b", "z", "qa"],
                           "cache_key": ["K", "K", "K", "Kq-old"]})
    plan = plan_embedding_update(current, stored, {"document": "K", "query": "Kq"})
    assert sorted(plan.to_embed["item_id"].to_list()) == ["d:2", "d:3", "q:1"]
    assert plan.to_delete == ["d:9"] and plan.unchanged == 1


def test_embed_in_chunks_commits_each_chunk():
    items = pl.DataFrame({"item_id": [f"d:{i}" for i in range(5)], "role": ["document"] * 5,
                          "content_hash": ["h"] * 5, "text": ["t"] * 5})
    plan = plan_embedding_update(items, pl.DataFrame(schema={c: pl.String for c in
                                                             ["item_id", "content_hash", "cache_key"]}), {})
    commits = []
    done = embed_in_chunks(plan, lambda texts, role: np.zeros((len(texts), 2)),
                           lambda chunk, vec: commits.append(chunk.height), chunk_size=2)
    assert done == 5 and commits == [2, 2, 1]


def test_count_truncated_matches_tokenizing_everything(tiny_encoder):
    from transformers import AutoTokenizer

    from retriever_assets.core.encoding import count_truncated

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    texts = ["short", "word " * 10, "x" * 30, "é" * 12, "protein " * 4, "", "a b c d e f g h i j k l m n o p"]
    for limit in (4, 8, 12, 16, 40):
        brute = sum(len(ids) > limit for ids in tokenizer(texts, truncation=False)["input_ids"])
        assert count_truncated(tokenizer, texts, limit) == brute, limit


def test_fingerprint_memo_only_for_settled_files(tmp_path):
    import os

    from retriever_assets.core import encoding

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"abc")
    before = len(encoding._FINGERPRINTS)
    fresh = model_fingerprint(str(tmp_path))
    weights.write_bytes(b"abd")  # same size, rewritten at once: too recent to be memoized, so it is re-hashed
    assert model_fingerprint(str(tmp_path)) != fresh and len(encoding._FINGERPRINTS) == before
    old = 1_600_000_000_000_000_000
    os.utime(weights, ns=(old, old))
    settled = model_fingerprint(str(tmp_path))
    assert len(encoding._FINGERPRINTS) == before + 1 and model_fingerprint(str(tmp_path)) == settled
    weights.write_bytes(b"abcd")  # a change of size is seen whatever the time
    os.utime(weights, ns=(old, old))
    assert model_fingerprint(str(tmp_path)) != settled


def test_count_truncated_caps_the_work_on_huge_documents_and_stays_exact(tiny_encoder):
    from transformers import AutoTokenizer

    from retriever_assets.core.encoding import count_truncated

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    seen: list[int] = []

    class Counting:  # records how many characters reach the tokenizer
        def __call__(self, texts, **kwargs):
            seen.extend(len(t) for t in texts)
            return tokenizer(texts, **kwargs)

    huge = "protein folding " * 1_000_000  # 16 MB
    unusual = "x" * 5000 + " " + "word " * 300  # one 5000-character word: a single [UNK], then 300 words
    texts = [huge, "short text", unusual, "long " * 20]
    brute = sum(len(ids) > 64 for ids in tokenizer([t for t in texts if t is not huge], truncation=False)["input_ids"])
    assert count_truncated(Counting(), texts, 64) == brute + 1
    assert max(seen) < 64 * 8 * 16 + 1  # never the whole 16 MB
    # exact on random word mixes at several limits
    rng = __import__("random").Random(0)
    words = ["a", "protein", "é", "x" * 150, "folding", "12345", "naïve"]
    mixes = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 400))) for _ in range(40)]
    for limit in (8, 32, 128):
        brute = sum(len(ids) > limit for ids in tokenizer(mixes, truncation=False)["input_ids"])
        assert count_truncated(tokenizer, mixes, limit, chars_per_token=1) == brute, limit


def test_cache_key_has_the_encoding_environment_and_the_document_template():
    from retriever_assets.core.encoding import encoding_environment

    spec = EncoderSpec(name="t", model="m")
    cpu = encoding_environment(spec, "cpu")
    assert cpu["device"] == "cpu" and cpu["dtype"] == "fp32" and cpu["torch"] and cpu["sentence-transformers"]
    gpu = encoding_environment(spec, "cuda:1")
    assert gpu["device"] == "cuda" and gpu["dtype"] == "fp16"
    assert encoding_environment(dataclasses.replace(spec, precision="bf16"), "cuda")["dtype"] == "bf16"
    assert encoding_environment(dataclasses.replace(spec, precision="bf16"), "cpu")["dtype"] == "fp32"
    keys = {embedding_cache_key(spec, "fp", "document", env) for env in (cpu, gpu, cpu | {"torch": "9.9"})}
    assert len(keys) == 3
    templated = dataclasses.replace(spec, document_template="title: {title_or_none} | text: {text}")
    assert embedding_cache_key(templated, "fp", "document", cpu) != embedding_cache_key(spec, "fp", "document", cpu)
    assert embedding_cache_key(templated, "fp", "query", cpu) == embedding_cache_key(spec, "fp", "query", cpu)


def test_document_template_places_the_title():
    gemma = EncoderSpec(name="g", document_template="title: {title_or_none} | text: {text}")
    assert gemma.document("Aspirin", " It helps. ") == "title: Aspirin | text: It helps."
    assert gemma.document("", "It helps.") == "title: none | text: It helps."
    plain = EncoderSpec(name="m")
    assert plain.document("Aspirin", "It helps.") == "Aspirin It helps." and plain.document("", "x") == "x"


def test_count_truncated_reads_a_tokenizers_tokenizer(tiny_encoder):
    """StaticEmbedding models carry a `tokenizers.Tokenizer`, not a transformers tokenizer."""
    from tokenizers import Tokenizer

    from retriever_assets.core.encoding import count_truncated

    tok = Tokenizer.from_file(str(next(tiny_encoder.rglob("tokenizer.json"))))
    texts = ["short text", "word " * 300, "émoji ünïcode " * 3]
    assert count_truncated(tok, texts, 64) == 1
