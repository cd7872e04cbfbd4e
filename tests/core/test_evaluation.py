"""mteb scoring of several splits in one call: the same scores as one split at a time, the corpus encoded once."""

from retriever_assets.core.corpus import hold_out_dev, load_beir_folder
from retriever_assets.core.evaluation import evaluate_retrieval


def test_extra_splits_reuse_the_corpus_encoding_and_keep_the_scores(tiny_encoder, demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb"))
    from sentence_transformers import SentenceTransformer

    data = load_beir_folder(demo_root / "demo-qa")
    qrels = hold_out_dev(data.qrels, "train", 0.2)
    model = SentenceTransformer(str(tiny_encoder), device="cpu")
    encoded = []
    original = model.encode_document

    def counting(texts, **kw):
        encoded.append(len(texts))
        return original(texts, **kw)

    monkeypatch.setattr(model, "encode_document", counting)
    kw = dict(corpus=data.corpus, queries=data.queries, qrels=qrels, dataset="demo", model_name="t/tiny",
              revision="r1")
    both = evaluate_retrieval(model, split="test", extra_splits=("dev",), output_dir=tmp_path / "a", **kw)
    assert sum(encoded) == data.corpus.height  # documents encoded once for test and dev
    encoded.clear()
    test_only = evaluate_retrieval(model, split="test", output_dir=tmp_path / "b", **kw)
    dev_only = evaluate_retrieval(model, split="dev", output_dir=tmp_path / "c", **kw)
    assert {k: both[k] for k in ("ndcg_at_10", "recall_at_100")} == {
        k: test_only[k] for k in ("ndcg_at_10", "recall_at_100")}
    assert both["splits"]["dev"] == {k: dev_only[k] for k in both["splits"]["dev"]}
    assert both["splits"]["dev"] != {k: test_only[k] for k in both["splits"]["dev"]}
