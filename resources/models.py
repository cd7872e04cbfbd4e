"""Every model the pipeline loads: the configured teachers (dense SentenceTransformers and BM25) by name, and the
student, base and judge encoders, all on one device and from one model cache."""


import os
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from retriever_assets.core.encoding import EncoderSpec, default_device, load_sentence_transformer
from retriever_assets.core.naming import validate_name


class TeacherConfig(dg.Config):
    """One teacher. `model` is an offline alias (all-MiniLM-L6-v2, all-mpnet-base-v2), a local folder or a hub id."""

    name: str
    kind: Literal["dense", "bm25"] = "dense"
    model: str = "all-MiniLM-L6-v2"
    revision: str | None = None
    query_prompt: str = ""
    document_prompt: str = ""
    max_seq_length: int = 256
    normalize: bool = True
    trust_remote_code: bool = False  # only for a model you trust: it runs the model repo's Python code
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"  # onnx*: ONNX Runtime on the CPU (int8: faster)
    document_template: str = ""  # "" = "{title} {text}"; placeholders {title}, {text}, {title_or_none}
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: fp16 on CUDA; bf16/fp32 for models fp16 overflows

    def spec(self) -> EncoderSpec:
        return EncoderSpec(
            name=validate_name(self.name, what="teacher name"),
            model=self.model if self.kind == "dense" else "bm25",
            kind=self.kind,
            revision=self.revision,
            query_prompt=self.query_prompt,
            document_prompt=self.document_prompt,
            max_seq_length=self.max_seq_length,
            normalize=self.normalize,
            trust_remote_code=self.trust_remote_code,
            backend=self.backend,
            document_template=self.document_template,
            precision=self.precision,
        )


def default_teachers(dense_model: str = "all-MiniLM-L6-v2") -> list[TeacherConfig]:
    """The one default teacher list: `minilm` (dense; RETRIEVER_TEACHER_MODEL picks another model) and `bm25`."""
    return [TeacherConfig(name="minilm", model=dense_model), TeacherConfig(name="bm25", kind="bm25")]


# teachers that can be named alone in RETRIEVER_TEACHERS (the dense models install offline; gemma by `make gemma`)
TEACHER_PRESETS = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2", "gemma": "embeddinggemma-300m",
                   "bm25": None}
# google/embeddinggemma-300m as published: its retrieval prompts and title template (config_sentence_transformers
# .json), never fp16 (its activations overflow: bf16 on CUDA, fp32 on CPU); Gemma Terms of Use
GEMMA_SETTINGS = {"query_prompt": "task: search result | query: ",
                  "document_template": "title: {title_or_none} | text: {text}", "precision": "bf16"}


def preset_teacher(name: str, dense_model: str = "all-MiniLM-L6-v2") -> TeacherConfig:
    """The teacher a preset name stands for (minilm takes RETRIEVER_TEACHER_MODEL's model)."""
    if name == "bm25":
        return TeacherConfig(name="bm25", kind="bm25")
    if name == "gemma":
        return TeacherConfig(name="gemma", model=TEACHER_PRESETS["gemma"], **GEMMA_SETTINGS)
    return TeacherConfig(name=name, model=dense_model if name == "minilm" else TEACHER_PRESETS[name])


def teachers_from_list(spec: str | None, dense_model: str = "all-MiniLM-L6-v2") -> list[TeacherConfig]:
    """Teachers from a comma-separated list (RETRIEVER_TEACHERS): a preset name (`minilm`, `mpnet`, `gemma`, `bm25`) or
    `name=model` for another dense model (alias, folder or hub id). None or empty: `default_teachers`."""
    if not spec or not spec.strip():
        return default_teachers(dense_model)
    teachers = []
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        name, _, model = item.partition("=")
        name = name.strip()
        if model:
            teachers.append(TeacherConfig(name=name, model=model.strip()))
        elif name in TEACHER_PRESETS:
            teachers.append(preset_teacher(name, dense_model))
        else:
            raise ValueError(f"RETRIEVER_TEACHERS: unknown teacher {name!r}: use one of {sorted(TEACHER_PRESETS)} "
                             "or name=model")
    return teachers


class ModelsResource(dg.ConfigurableResource):
    """Loads every model (teachers, student, base, judge) on one device (auto = CUDA when present); `teachers` are
    the ones that mine candidates (default: all-MiniLM-L6-v2 dense + BM25, `default_teachers`)."""

    teachers: list[TeacherConfig] = Field(default_factory=default_teachers)
    device: str = "auto"
    model_cache_dir: str = ".cache/models"

    def specs(self) -> dict[str, EncoderSpec]:
        specs = {t.name: t.spec() for t in self.teachers}
        if len(specs) != len(self.teachers):
            raise ValueError("two teachers share a name")
        return specs

    def kinds(self) -> dict[str, str]:
        return {name: s.score_kind for name, s in self.specs().items()}

    def resolved_device(self) -> str:
        return default_device(self.device, allow_cuda=os.environ.get("RETRIEVER_FORCE_CPU") != "1")

    def load(self, spec: EncoderSpec):
        """(SentenceTransformer, resolved path) for a dense spec, on the resolved device."""
        return load_sentence_transformer(spec, device=self.resolved_device(), cache_dir=Path(self.model_cache_dir))
