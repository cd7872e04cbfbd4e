"""Read and validate a BEIR-layout QA corpus (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).

Strict mode stops at the first bad record with a `CorpusFormatError` naming file, line and problem.
Lenient mode skips the bad record, counts it by reason and keeps the first examples, so nothing is
dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

ValidationMode = Literal["strict", "lenient"]
MAX_EXAMPLES = 5


class CorpusFormatError(ValueError):
    """A record of a BEIR folder is unusable: says which file, which line and what is wrong."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass
class ValidationReport:
    """Counts of skipped or notable records by reason, with the first few examples of each."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def note(self, reason: str, path: Path, line: int | None, detail: str = "") -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES * 4:
            where = f"{path.name}:{line}" if line is not None else path.name
            self.examples.append(f"{where}: {reason}{(' (' + detail + ')') if detail else ''}")


@dataclass
class BeirCorpus:
    """One validated data set: documents with content hashes, queries, and qrels of every split."""

    corpus: pl.DataFrame  # doc_id, title, text, content_hash
    queries: pl.DataFrame  # query_id, text, content_hash
    qrels: pl.DataFrame  # split, query_id, doc_id, score (positives have score > 0)
    report: ValidationReport


def content_hash(*parts: str) -> str:
    """Stable 128-bit hash of a record's text fields: what decides whether it is re-embedded."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def document_text(title: str, text: str) -> str:
    """Text a model sees for a document: BEIR's and MTEB's title-space-text convention."""
    return f"{title} {text}".strip() if title else text.strip()


def _fail_or_skip(
    mode: ValidationMode, report: ValidationReport, path: Path, line: int | None, reason: str, detail: str = ""
) -> None:
    if mode == "strict":
        raise CorpusFormatError(path, line, reason + (f": {detail}" if detail else ""))
    report.note(reason, path, line, detail)


def _read_lines(path: Path, mode: ValidationMode, report: ValidationReport):
    """Yield (line_number, decoded_line) with BOM and CRLF handled and undecodable lines reported."""
    if not path.is_file():
        raise CorpusFormatError(path, None, "file not found")
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw.rstrip(b"\r\n")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _fail_or_skip(mode, report, path, number, "not valid UTF-8", f"byte {exc.start}")
                continue
            yield number, line


READ_BATCH = 65536  # records per frame while reading: only one batch of Python strings exists at a time


def _frame_batch(kind: str, ids: list[str], titles: list[str], texts: list[str]) -> pl.DataFrame:
    """One batch of read records as the frame load_beir_folder returns (documents: doc_id, title, text,
    content_hash; queries: query_id, text, content_hash)."""
    if kind == "document":
        return pl.DataFrame({"doc_id": ids, "title": titles, "text": texts,
                             "content_hash": [content_hash(t, x) for t, x in zip(titles, texts, strict=True)]},
                            schema={"doc_id": pl.String, "title": pl.String, "text": pl.String,
                                    "content_hash": pl.String})
    return pl.DataFrame({"query_id": ids, "text": texts, "content_hash": [content_hash(x) for x in texts]},
                        schema={"query_id": pl.String, "text": pl.String, "content_hash": pl.String})


def _read_jsonl(path: Path, kind: str, mode: ValidationMode, report: ValidationReport, *,
                frames: list[pl.DataFrame] | None = None, batch_size: int = READ_BATCH) -> dict[str, tuple[str, int]]:
    """Read corpus.jsonl or queries.jsonl, validating each record, in batches: the kept records go to `frames`
    (`_frame_batch` frames of `batch_size` records) and the result maps each id to (a hash of its title and text,
    its line), what the duplicate check and the qrels check need; no record's text is held beyond its batch."""
    records: dict[str, tuple[str, int]] = {}
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []

    def flush():
        if ids and frames is not None:
            frames.append(_frame_batch(kind, ids, titles, texts))
        for column in (ids, titles, texts):
            column.clear()

    for number, line in _read_lines(path, mode, report):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            _fail_or_skip(mode, report, path, number, "malformed JSON", exc.msg)
            continue
        if not isinstance(obj, dict):
            _fail_or_skip(mode, report, path, number, "record is not a JSON object")
            continue
        problem = None
        for key in ("_id", "text"):
            if key not in obj:
                problem = f"missing '{key}'"
                break
        if problem is None:
            for key in ("_id", "text", "title"):
                if key in obj and obj[key] is not None and not isinstance(obj[key], str):
                    problem = f"'{key}' is {type(obj[key]).__name__}, expected a string"
                    break
        if problem is None and (obj["_id"] is None or not obj["_id"].strip()):
            problem = "empty '_id'"
        if problem is not None:
            _fail_or_skip(mode, report, path, number, problem)
            continue
        rid, title, text = obj["_id"].strip(), obj.get("title") or "", obj["text"] or ""
        if not text.strip():
            # "", whitespace only and null are one case: an empty text, whatever the title says
            if mode == "strict":
                raise CorpusFormatError(path, number, f"empty {kind} text: id {rid!r}" + (
                    " (it has a title; --lenient keeps it as title only)" if title.strip() else ""))
            if kind == "document" and title.strip():
                report.note("document with empty text kept as its title only", path, number, f"id {rid!r}")
                text = ""
            else:
                report.note(f"empty {kind} text", path, number, f"id {rid!r}")
                continue
        digest = content_hash(title, text)
        if rid in records:
            previous_digest, previous_line = records[rid]
            if previous_digest == digest:
                report.note(f"duplicate {kind} id with identical content (kept once)", path, number, rid)
                continue
            _fail_or_skip(
                mode, report, path, number, f"duplicate {kind} id with different content",
                f"id {rid!r} first seen on line {previous_line}",
            )
            continue
        records[rid] = (digest, number)
        ids.append(rid)
        titles.append(title)
        texts.append(text)
        if len(ids) >= batch_size:
            flush()
    flush()
    return records


def _read_qrels(
    path: Path, mode: ValidationMode, report: ValidationReport, queries: dict, docs: dict,
    first_lines: dict[str, int] | None = None,
) -> list[tuple[str, str, int]]:
    """Read one qrels TSV (header optional), keeping rows whose ids exist; `first_lines` gets each kept query's
    first line."""
    rows: list[tuple[str, str, int]] = []
    seen: dict[tuple[str, str], tuple[int, int]] = {}  # (query, doc) -> (index in rows, line)
    for number, line in _read_lines(path, mode, report):
        if not line.strip():
            continue
        cols = line.split("\t")
        if number == 1:
            looks_like_header = len(cols) >= 3 and not cols[2].strip().lstrip("-").isdigit()
            if looks_like_header:
                if [c.strip() for c in cols[:3]] != ["query-id", "corpus-id", "score"]:
                    report.note("qrels header differs from 'query-id corpus-id score' (read by position)", path, 1)
                continue
            report.note("qrels header missing (first line read as data)", path, 1)
        if len(cols) < 3:
            _fail_or_skip(mode, report, path, number, f"expected 3 tab-separated columns, found {len(cols)}")
            continue
        qid, did, score_text = cols[0].strip(), cols[1].strip(), cols[2].strip()
        try:
            score = int(float(score_text))
        except ValueError:
            _fail_or_skip(mode, report, path, number, f"score {score_text!r} is not a number")
            continue
        if qid not in queries:
            _fail_or_skip(mode, report, path, number, "qrels names an unknown query", f"query {qid!r}")
            continue
        if did not in docs:
            _fail_or_skip(mode, report, path, number, "qrels names an unknown document", f"document {did!r}")
            continue
        if (qid, did) in seen:
            at, first_line = seen[(qid, did)]
            first_score = rows[at][2]
            if first_score == score:
                report.note("duplicate qrels row (kept once)", path, number, f"{qid} {did}, as line {first_line}")
                continue
            detail = f"{qid} {did}: line {first_line} says {first_score}, this line says {score}"
            if mode == "strict":
                raise CorpusFormatError(path, number, f"conflicting duplicate judgement ({detail}); fix the file, "
                                                      "or --lenient keeps the higher score")
            # lenient: the higher judgement wins, so a positive is never lost to a later 0
            report.note("conflicting duplicate judgement (higher score kept)", path, number, detail)
            rows[at] = (qid, did, max(first_score, score))
            continue
        if score <= 0:
            report.note("qrels score 0 (kept, not a positive)", path, number, f"{qid} {did}")
        seen[(qid, did)] = (len(rows), number)
        if first_lines is not None:
            first_lines.setdefault(qid, number)
        rows.append((qid, did, score))
    return rows


OVERLAP_REASON = "query in both the training and the test qrels (dropped from training, kept in test)"


def load_beir_folder(
    folder: Path | str, *, splits: tuple[str, ...] | None = None, mode: ValidationMode = "strict",
    held_apart: tuple[str, str] | None = None,
) -> BeirCorpus:
    """Load and validate a BEIR folder; `splits=None` reads every qrels/*.tsv found.

    `held_apart=(train_split, test_split)`: the two splits must not share a query (a model tested on a query it
    was trained on, whose test-only positives could be mined as its negatives). Strict refuses the first shared
    query (test file, line, query id); lenient drops it from training, keeps it in test and counts it. The same
    split for both is refused in either mode.
    """
    folder = Path(folder)
    if held_apart is not None and held_apart[0] == held_apart[1]:
        raise CorpusFormatError(folder / "qrels" / f"{held_apart[0]}.tsv", None,
                                f"train_split and test_split are both {held_apart[0]!r}: every test query would be "
                                "a training query; name two different qrels files")
    report = ValidationReport()
    doc_frames: list[pl.DataFrame] = []  # read and hashed in batches (READ_BATCH records each)
    docs = _read_jsonl(folder / "corpus.jsonl", "document", mode, report, frames=doc_frames)
    if not docs:
        raise CorpusFormatError(folder / "corpus.jsonl", None, "corpus is empty (no usable document)")
    query_frames: list[pl.DataFrame] = []
    queries = _read_jsonl(folder / "queries.jsonl", "query", mode, report, frames=query_frames)
    if not queries:
        raise CorpusFormatError(folder / "queries.jsonl", None, "no usable query")
    qrels_dir = folder / "qrels"
    if splits is None:
        found = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        if not found:
            raise CorpusFormatError(qrels_dir, None, "no qrels/<split>.tsv file found")
        splits = tuple(found)
    by_split: dict[str, list[tuple[str, str, int]]] = {}
    lines: dict[str, dict[str, int]] = {}  # split -> query -> its first line in the split's file
    for split in splits:
        path = qrels_dir / f"{split}.tsv"
        lines[split] = {}
        rows = _read_qrels(path, mode, report, queries, docs, lines[split])
        if not any(score > 0 for _, _, score in rows):
            raise CorpusFormatError(path, None, f"split '{split}' has no positive qrels")
        positives = {q for q, _, s in rows if s > 0}
        for qid in sorted({q for q, _, _ in rows} - positives):
            report.note("query without any positive in split", path, None, f"{split}:{qid}")
        by_split[split] = rows
    if held_apart is not None and set(held_apart) <= set(by_split):
        by_split[held_apart[0]] = _hold_apart(qrels_dir, held_apart, by_split, lines, mode, report)
    qrel_rows = [(split, q, d, s) for split, rows in by_split.items() for q, d, s in rows]

    del docs, queries  # ids and hashes only; the records are in the batch frames
    corpus, query_frame = pl.concat(doc_frames, rechunk=False), pl.concat(query_frames, rechunk=False)
    del doc_frames, query_frames
    qrels = pl.DataFrame(
        qrel_rows, schema={"split": pl.String, "query_id": pl.String, "doc_id": pl.String, "score": pl.Int32},
        orient="row",
    )  # one row per (split, query, doc): duplicates were resolved, and reported, while reading
    # id order, not file order: every later step indexes rows, and ties between equal scores go to the lower row,
    # so candidate order among ties is by doc id whatever the file order, chunking or search path
    return BeirCorpus(corpus=corpus.sort("doc_id"), queries=query_frame.sort("query_id"), qrels=qrels, report=report)


def _hold_apart(qrels_dir: Path, held_apart: tuple[str, str], by_split: dict, lines: dict, mode: ValidationMode,
                report: ValidationReport) -> list[tuple[str, str, int]]:
    """The training split's rows without the queries the test split also judges (strict: the first one fails)."""
    train, test = held_apart
    shared = set(lines[train]) & set(lines[test])
    if not shared:
        return by_split[train]
    train_path, test_path = qrels_dir / f"{train}.tsv", qrels_dir / f"{test}.tsv"
    for qid in sorted(shared, key=lambda q: lines[test][q]):  # in the test file's order: the first is reported
        detail = (f"query {qid!r} is in both the training qrels ({train_path.name}, line {lines[train][qid]}) and "
                  f"the test qrels")
        if mode == "strict":
            raise CorpusFormatError(test_path, lines[test][qid], f"{detail}; remove it from one of them, or "
                                                                 "--lenient drops it from training")
        report.note(OVERLAP_REASON, test_path, lines[test][qid], detail)
    rows = [row for row in by_split[train] if row[0] not in shared]
    if not any(score > 0 for _, _, score in rows):
        raise CorpusFormatError(train_path, None, f"split '{train}' has no positive qrels once the {len(shared)} "
                                                  f"queries also in '{test}' are dropped")
    return rows


def folder_fingerprint(folder: Path | str) -> str:
    """Hash of the bytes of a BEIR folder's files (corpus, queries, every qrels split): changes on any edit."""
    folder = Path(folder)
    files = [folder / "corpus.jsonl", folder / "queries.jsonl", *sorted((folder / "qrels").glob("*.tsv"))]
    h = hashlib.blake2b(digest_size=16)
    for path in files:
        if not path.is_file():
            continue
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def positives_of(qrels: pl.DataFrame, split: str) -> pl.DataFrame:
    """(query_id, doc_id) pairs with a positive judgement in `split`."""
    return qrels.filter((pl.col("split") == split) & (pl.col("score") > 0)).select("query_id", "doc_id")


def dev_split_name(train_split: str, test_split: str) -> str:
    """The held-out split's label: `dev`, unless the folder's own splits already use that name."""
    return "dev" if "dev" not in (train_split, test_split) else "heldout-dev"


def hold_out_dev(qrels: pl.DataFrame, train_split: str, share: float, *, seed: int = 0,
                 dev_split: str = "dev") -> pl.DataFrame:
    """Relabel a deterministic `share` of the training queries (all their judgements) as split `dev_split`.

    A query is held out when a salted hash of its id falls below `share`: the choice depends on the id and the
    seed only (not on file order, and a query added later does not move the others), and it is independent of the
    unsalted hash order `select_training_queries` uses for training subsets. Held-out queries take no part in
    mining or training; recipes are compared on them, so the test split is never used to choose.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"dev share must be in [0, 1), got {share}")
    if share == 0.0:
        return qrels
    ids = qrels.filter(pl.col("split") == train_split)["query_id"].unique().sort().to_list()
    limit = int(share * 2**64)
    held = [q for q in ids
            if int.from_bytes(hashlib.blake2b(f"dev:{seed}:{q}".encode(), digest_size=8).digest()) < limit]
    if not held or len(held) == len(ids):
        raise ValueError(f"a dev share of {share} holds out {len(held)} of the {len(ids)} training queries of split "
                         f"'{train_split}': choose a share that leaves both dev and training queries")
    return qrels.with_columns(
        split=pl.when((pl.col("split") == train_split) & pl.col("query_id").is_in(held))
        .then(pl.lit(dev_split)).otherwise(pl.col("split"))
    )
