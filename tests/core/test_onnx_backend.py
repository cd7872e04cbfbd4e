"""The ONNX Runtime backends give (nearly) the torch vectors, are cached per weights, and are keyed apart."""

import dataclasses

import numpy as np
import pytest

from retriever_assets.core.encoding import EncoderSpec, embedding_cache_key, load_sentence_transformer

pytest.importorskip("onnxruntime")

TEXTS = ["a short query", "a much longer document about proteins, cells and the immune response " * 5,
         "protein folding", ""]


def encode(model):
    return model.encode(TEXTS, batch_size=2, normalize_embeddings=True, convert_to_numpy=True)


def test_onnx_backends_match_torch_and_reuse_the_export(tiny_encoder, tmp_path):
    spec = EncoderSpec(name="t", model=str(tiny_encoder), max_seq_length=64)
    torch_model, _ = load_sentence_transformer(spec, cache_dir=tmp_path)
    reference = encode(torch_model)
    fp32_model, _ = load_sentence_transformer(dataclasses.replace(spec, backend="onnx"), cache_dir=tmp_path)
    assert type(fp32_model[0].model).__name__ == "OnnxEncoder"
    np.testing.assert_allclose(encode(fp32_model), reference, atol=1e-5)
    int8_spec = dataclasses.replace(spec, backend="onnx-int8")
    int8_model, _ = load_sentence_transformer(int8_spec, cache_dir=tmp_path)
    cosines = np.sum(encode(int8_model) * reference, axis=1)
    assert cosines.min() > 0.9, cosines  # quantized weights move the vectors a little, not a lot
    exported = sorted((tmp_path / "onnx").rglob("*.onnx"))
    assert [p.name for p in exported] == ["model-int8.onnx", "model.onnx"]
    stamps = [p.stat().st_mtime_ns for p in exported]
    load_sentence_transformer(int8_spec, cache_dir=tmp_path)
    assert [p.stat().st_mtime_ns for p in exported] == stamps  # exported once per weights, then reused


def test_backend_is_part_of_the_cache_key_and_cpu_only(tiny_encoder, tmp_path):
    keys = {b: embedding_cache_key(EncoderSpec(name="t", backend=b), "fp", "document")
            for b in ("torch", "onnx", "onnx-int8")}
    assert len(set(keys.values())) == 3
    with pytest.raises(ValueError, match="CPU only"):
        load_sentence_transformer(EncoderSpec(name="t", model=str(tiny_encoder), backend="onnx-int8"),
                                  device="cuda", cache_dir=tmp_path)
