"""The leaderboard: every recipe's student side by side, with the false-negative audit by a judge model."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.models import ModelsResource
from resources.storage import StorageResource, write_json
from retriever_assets.core.corpus import positives_of
from retriever_assets.core.encoding import EncoderSpec, model_fingerprint
from retriever_assets.core.training import select_training_queries
from retriever_assets.core.versions import hash_rows
from retriever_assets.steps.common import Log, StepReport, doc_texts, teachers_path


def compare_recipes(
    storage: StorageResource,
    models: ModelsResource,
    dataset: str,
    recipe_names: list[str],
    *,
    judge_model: str | None,
    audit_max_queries: int | None = None,
    judge_max_seq_length: int = 256,
    log: Log,
) -> StepReport:
    """Leaderboard over every recipe that has scores, with the false-negative audit when a judge is set."""
    from retriever_assets.core.leaderboard import (
        build_leaderboard,
        cross_dataset_matrix,
        dev_selection_summary,
        false_negative_audit,
        staleness,
        summarize_seeds,
        to_markdown,
    )

    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    corpus, queries, qrels, manifest = artifacts.read_corpus()
    scores, mining, training = {}, {}, {}
    for name in recipe_names:
        if not artifacts.scores_file(name).exists():
            log(f"recipe {name}: no scores yet (materialize its mteb_scores); left out")
            continue
        scores[name] = artifacts.read_scores(name)
        mining[name] = artifacts.read_mining_stats(name)
        training[name] = artifacts.read_student_manifest(name)
    if not scores:
        raise RuntimeError(f"no recipe of {dataset!r} has MTEB scores yet: materialize mteb_scores first")
    current = artifacts.corpus_identity()
    stale_reasons = {name: staleness(current, scores[name], training[name]) for name in scores}
    for name, why in stale_reasons.items():
        if why:
            log(f"recipe {name}: marked stale on the leaderboard, not ranked nor chosen: {why}")
    out = artifacts.leaderboard_dir
    previous = json.loads((out / "audit.json").read_text()) if (out / "audit.json").exists() else {}
    negatives_hash = {
        name: hashlib.blake2b(artifacts.negatives_file(name).read_bytes(), digest_size=12).hexdigest()
        for name in scores
    }
    # an audit stays valid while the recipe's negatives are the same file content on the same corpus (and, when a
    # judge is set, the same judge weights, length and audited query ids); without a judge, earlier audits are kept
    # rather than lost. Keyed by what decides the judgement: the judge's weight fingerprint (not its path) and a
    # hash of the audited ids (not their count)
    setup: dict | None = None
    kept_by = {"corpus_version": current["corpus_version"]}
    judge_teacher = models.specs().get(judge_model) if judge_model else None
    if judge_teacher is not None and judge_teacher.kind != "dense":
        raise ValueError(f"judge {judge_model!r} is a {judge_teacher.kind} teacher: the audit needs a dense judge")
    if judge_model:
        positives = positives_of(qrels, manifest["train_split"])
        audited = select_training_queries(positives["query_id"].to_list(), audit_max_queries)
        positives = positives.filter(pl.col("query_id").is_in(audited))
        audited_hash = hash_rows([(q,) for q in sorted(audited)])
        if judge_teacher is not None:
            # a configured dense teacher judges with the vectors it already stored (every document and training
            # query): nothing is re-encoded; its cache keys name weights, settings and environment
            from retriever_assets.steps.dense import DenseTeacher

            teacher = DenseTeacher(judge_teacher, models)
            keys = teacher.current_cache_keys()
            judge_spec, judge_path = judge_teacher, teachers_path(models, judge_teacher)
            setup = kept_by | {"judge_fingerprint": f"teacher {judge_model}: {keys['document']}/{keys['query']}",
                               "judge_max_seq_length": judge_teacher.max_seq_length,
                               "audited_queries_hash": audited_hash}
        else:
            judge_spec = EncoderSpec(name="judge", model=judge_model, max_seq_length=judge_max_seq_length)
            judge_path = teachers_path(models, judge_spec)
            setup = kept_by | {"judge_fingerprint": model_fingerprint(judge_path, judge_spec.revision),
                               "judge_max_seq_length": judge_max_seq_length,
                               "audited_queries_hash": audited_hash}
    audits: dict[str, dict] = {}
    for name in scores:
        same = previous.get(name, {})
        if same.get("negatives_hash") == negatives_hash[name] and all(
                same.get(k) == v for k, v in (setup or kept_by).items()):
            audits[name] = same
            log(f"recipe {name}: audit {'reused' if setup else 'kept from an earlier leaderboard (no judge now)'} "
                f"({same['false_negative_share']:.1%} suspected false negatives)")
    fresh = [name for name in scores if name not in audits] if setup else []
    if fresh and judge_teacher is not None:
        judge = stored_vector_judge(storage, dataset, judge_teacher, teacher, audited, positives,
                                    [artifacts.read_negatives(name) for name in fresh])
    elif fresh:  # the judge is loaded only when some recipe has negatives it has not judged yet
        model, _ = models.load(judge_spec)
        q_text = dict(queries.select("query_id", "text").iter_rows())
        d_text = doc_texts(corpus)
        cache: dict[tuple[str, str], np.ndarray] = {}

        def vectors(kind: str, ids):
            missing = sorted({i for i in ids if (kind, i) not in cache})
            if missing:
                texts = [q_text[i] if kind == "q" else d_text[i] for i in missing]
                encoded = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
                cache.update({(kind, i): v for i, v in zip(missing, encoded, strict=True)})
            return np.stack([cache[(kind, i)] for i in ids])

        def judge(query_ids, doc_ids):
            return np.einsum("ij,ij->i", vectors("q", query_ids), vectors("d", doc_ids))

    for name in fresh:
        negatives = artifacts.read_negatives(name).filter(pl.col("query_id").is_in(audited))
        independent = judge_model not in mining[name].get("recipe", {}).get("teachers", ())
        audits[name] = false_negative_audit(negatives, positives, judge) | setup | {
            "negatives_hash": negatives_hash[name], "judge": judge_path, "queries_audited": len(audited),
            # a judge audits a recipe only when it is not one of the teachers that mined it (and stronger)
            "judge_independent": independent,
            **({} if independent else {"audit_note": f"the judge {judge_model!r} mined these negatives itself: "
                                       "not an independent audit (use a stronger judge than the teacher)"})}
        log(f"recipe {name}: {audits[name]['false_negative_share']:.1%} suspected false negatives"
            + ("" if independent else f" (not independent: {judge_model} is this recipe's teacher)"))
    board = build_leaderboard(scores, mining, training, audits, current=current)
    board.write_csv(out / "leaderboard.csv")
    seeds = summarize_seeds(board)
    (out / "leaderboard.md").write_text(to_markdown(board) + "\n")
    matrix = cross_dataset_matrix(dataset, scores, stale_reasons)
    selection = dev_selection_summary(board)
    for stale in ("seeds.csv", "seeds.md", "cross_dataset.csv", "cross_dataset.md", "selection.json"):
        (out / stale).unlink(missing_ok=True)
    if seeds.height:
        seeds.write_csv(out / "seeds.csv")
        (out / "seeds.md").write_text(to_markdown(seeds) + "\n")
    if len(set(matrix.columns) - {"model", dataset, "stale"}):  # some model was scored on another dataset
        matrix.write_csv(out / "cross_dataset.csv")
        (out / "cross_dataset.md").write_text(to_markdown(matrix) + "\n")
    if selection:
        write_json(out / "selection.json", selection)
    write_json(out / "audit.json", audits)
    return StepReport(time.perf_counter() - start, {"board": board, "seeds": seeds, "audits": audits,
                                                    "folder": str(out), "recipes": list(scores),
                                                    "cross_dataset": matrix, "selection": selection,
                                                    "stale": {f"student: {n}": why
                                                              for n, why in stale_reasons.items() if why}})


def stored_vector_judge(storage: StorageResource, dataset: str, spec: EncoderSpec, teacher, audited: list[str],
                        positives: pl.DataFrame, negatives: list[pl.DataFrame]):
    """`judge(query_ids, doc_ids)` by the cosines of a dense teacher's stored vectors (documents and training
    queries), refusing vectors the teacher's current settings would not make."""
    store = storage.embedding_store(dataset, spec.name)
    doc_ids = sorted(set(positives["doc_id"].to_list()).union(*(set(n["doc_id"].to_list()) for n in negatives)))
    teacher.refuse_stale_vectors(store, doc_ids, audited)  # the check candidate_lists makes; missing: KeyError
    q_row = {q: i for i, q in enumerate(audited)}
    d_row = {d: i for i, d in enumerate(doc_ids)}
    q_vec, d_vec = store.vectors("query", audited), store.vectors("document", doc_ids)

    def judge(query_ids, doc_ids_):
        q = q_vec[[q_row[i] for i in query_ids]]
        d = d_vec[[d_row[i] for i in doc_ids_]]
        return np.einsum("ij,ij->i", q.astype(np.float64), d.astype(np.float64))

    return judge


def select_best_student(storage: StorageResource, dataset: str, log: Log) -> StepReport:
    """Point `best_student.json` at the checkpoint of the recipe the leaderboard chose on the dev split.

    Without a dev split nothing is chosen (the test split is never used to choose) and the file says why.
    """
    from retriever_assets.core.leaderboard import best_by_dev

    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    board_file = artifacts.leaderboard_dir / "leaderboard.csv"
    if not board_file.exists():
        raise RuntimeError(f"{board_file} does not exist: materialize the leaderboard of {dataset!r} first")
    board = pl.read_csv(board_file)
    chosen = best_by_dev(board)
    if chosen is None:
        pointer = {"selected": None, "reason": "no student has a dev score: materialize qa_corpus with dev_share > 0 "
                                               "(or RETRIEVER_DEV_SHARE) and re-run the lineages; test scores are "
                                               "never used to choose"}
        log(pointer["reason"])
    else:
        student = artifacts.read_student_manifest(chosen["recipe"])
        pointer = {
            "selected": chosen["recipe"], "selected_by": "dev_ndcg_at_10",
            "model_dir": student["model_dir"], "fingerprint": student["fingerprint"],
            "dev_ndcg_at_10": chosen["dev_ndcg_at_10"], "test_ndcg_at_10": chosen["ndcg_at_10"],
            "base_model": student["base_model"], "settings": student.get("settings"),
        }
        log(f"best student by dev nDCG@10: {chosen['recipe']} ({chosen['dev_ndcg_at_10']:.4f}; test "
            f"{chosen['ndcg_at_10']:.4f}) at {student['model_dir']}")
    write_json(artifacts.best_student_file, pointer)
    return StepReport(time.perf_counter() - start, pointer)

