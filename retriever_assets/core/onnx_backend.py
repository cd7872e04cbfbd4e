"""A faster CPU backend for dense encoders: the transformer runs in ONNX Runtime, optionally int8-quantized.

sentence-transformers' own `backend="onnx"` needs optimum, whose releases pin transformers < 4.58 (we run
transformers 5). So we export the loaded transformer once with `torch.onnx.export`, quantize its weights with
ONNX Runtime's dynamic int8 quantization (per channel) when asked, and swap the module inside the
SentenceTransformer: tokenization, length-sorted batching, pooling and normalization stay sentence-transformers'.

Backends (EncoderSpec.backend, part of the embedding cache key):
    torch      the model as loaded (fp16 on CUDA)
    onnx       ONNX Runtime, fp32 (the same vectors up to float rounding)
    onnx-int8  ONNX Runtime with int8 weights (per-channel dynamic quantization): faster on CPUs, vectors shift
               slightly (cosine ~0.99 to fp32 on SciFact); benchmarks/embedding_throughput.py measures both.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(hf_model, folder: Path, *, quantize: bool) -> Path:
    """Export a Hugging Face encoder (last_hidden_state) to `folder/model.onnx`, and an int8 copy if asked.

    Files are written under a temporary name and renamed, so a killed export never leaves a broken model.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    names = [n for n in _INPUTS if n in _forward_inputs(hf_model)]
    if not fp32.exists():

        class LastHidden(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, *args):
                return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

        example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
        tmp = folder / f"model.onnx.tmp{os.getpid()}"
        was_training = hf_model.training
        hf_model.eval()
        with torch.no_grad():
            torch.onnx.export(
                LastHidden(hf_model), example, str(tmp), input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                opset_version=17, dynamo=False,
            )
        hf_model.train(was_training)
        tmp.replace(fp32)
    if not quantize:
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / f"model-int8.onnx.tmp{os.getpid()}"
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        tmp.replace(int8)
    return int8


def _forward_inputs(hf_model) -> set[str]:
    return set(inspect.signature(hf_model.forward).parameters)


def use_onnx_backend(model, backend: Backend, folder: Path) -> None:
    """Swap the first module's transformer of a SentenceTransformer for an ONNX Runtime session (in place)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return
    import onnxruntime as ort

    first = model[0]
    hf_model = first.model
    path = export_onnx(hf_model, folder, quantize=backend == "onnx-int8")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    first.model = OnnxEncoder(session, hf_model.config)


class _Output(dict):
    """Dict with attribute access, like transformers' ModelOutput."""

    __getattr__ = dict.__getitem__


class OnnxEncoder(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module (inference only)."""

    def __init__(self, session, config):
        super().__init__()
        self.session = session
        self.config = config
        self.input_names = [i.name for i in session.get_inputs()]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_ignored):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if given.get("token_type_ids") is None and input_ids is not None:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feeds = {n: given[n].cpu().numpy().astype(np.int64) for n in self.input_names}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return _Output(last_hidden_state=torch.from_numpy(hidden))
