"""Command line: register dataset folders as partitions and materialize the whole chain for one dataset.

    python -m retriever_assets.cli demo                      # bundled demo-qa, end to end, prints scores
    python -m retriever_assets.cli register                  # data-root folders -> dataset partitions
    python -m retriever_assets.cli run --dataset scifact --data-root ../shared/data [--epochs 1 ...]

Runs are recorded in the Dagster instance at $DAGSTER_HOME, so `dagster dev` shows them afterwards.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path


def _env_defaults() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # libraries' progress bars (mteb search, datasets); progress is logged
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shipped = Path(__file__).resolve().parent.parent / "dagster.yaml"
        if shipped.exists():
            config.write_text(shipped.read_text())
    os.environ.setdefault("HF_HOME", str(Path(".cache/hf").resolve()))
    os.environ.setdefault("MTEB_CACHE", str(Path(".cache/mteb").resolve()))


def _print_scores(artifacts, recipe: str) -> None:
    data, dataset = artifacts.read_scores(recipe), artifacts.dataset
    results = data["results"]
    base = results["base student"]["ndcg_at_10"]
    print(f"\nMTEB retrieval scores: dataset {dataset}, split {data['split']}, recipe {recipe}")
    width = max([32, *(len(label) for label in results)])
    header = f"{'model':<{width}} {'nDCG@10':>8} {'delta':>8} {'R@100':>8} {'MRR@10':>8} {'MAP@10':>8}"
    print(header)
    print("-" * len(header))
    for label, r in results.items():
        print(f"{label:<{width}} {r['ndcg_at_10']:>8.4f} {r['ndcg_at_10'] - base:>+8.4f} {r['recall_at_100']:>8.4f} "
              f"{r['mrr_at_10']:>8.4f} {r['map_at_10']:>8.4f}")
    for label, r in results.items():
        if r.get("result_json"):
            print(f"result JSON ({label}): {r['result_json']}")


LENIENT_HINT = ("hint: fix the record, or run again with --lenient to skip bad records and count them "
                "(README, 'Your own data'); data materialized before this run is kept")


def failure_summary(step: str, error) -> str:
    """The root cause of a failed step (Dagster wraps it in 'Error occurred while executing op ...') and a hint."""
    root = error
    while root.cause is not None:
        root = root.cause
    message = re.sub(rf"^[\w.]*{re.escape(root.cls_name or '')}: ", "", root.message.strip())  # no repeated class
    line = f"step {step} failed: {root.cls_name or 'error'}: {message}"
    if root.cls_name == "CorpusFormatError":
        line += "\n" + LENIENT_HINT
    return line


def _coverage_warning(artifacts, recipe: str) -> list[str]:
    from retriever_assets.core.mining import negative_coverage

    if not artifacts.mining_stats_file(recipe).exists():
        return []
    coverage = negative_coverage(artifacts.read_mining_stats(recipe))
    if coverage["level"] == "ok":
        return []
    return [f"{'ERROR' if coverage['level'] == 'error' else 'WARNING'}: {coverage['message']}"]


def _configured_recipe_names() -> set[str]:
    from retriever_assets.recipes import load_recipes

    return {r.name for r in load_recipes(os.environ.get("RETRIEVER_RECIPES"))}


def seed_notes(seed: int | None, recipes) -> list[str]:
    """A line for each recipe `--seed` does not train: one with its own `student_seed` keeps it (naive-seed2 must not
    train the student naive trains under another name, or the seeds table would show no spread)."""
    if seed is None:
        return []
    return [f"note: --seed {seed} does not apply to recipe {r.name!r}: it trains with its own student_seed "
            f"{r.student_seed}" for r in recipes if r.student_seed is not None and r.student_seed != seed]


def run_config(args, recipe_prefixes: list[str] | None = None) -> dict:
    """Run config from the command line; student and score settings apply to every recipe's lineage.

    `recipe_prefixes` are the op-name prefixes of the recipes ("" for the default recipe, "naive__", ...).
    """
    ops: dict = {}
    student = {k: v for k, v in {
        "epochs": args.epochs, "batch_size": args.batch_size, "base_model": args.base_model,
        "max_seq_length": args.max_seq_length, "seed": args.seed, "learning_rate": args.learning_rate,
        "max_train_queries": getattr(args, "max_train_queries", None),
    }.items() if v is not None}
    cross = getattr(args, "cross_datasets", None)
    scores = {k: v for k, v in {"max_seq_length": getattr(args, "eval_max_seq_length", None),
                                "evaluate_teachers": False if getattr(args, "skip_teacher_scores", False) else None,
                                "cross_datasets": None if cross is None else
                                [d for d in cross.split(",") if d and d != "none"],
                                }.items() if v is not None}
    for prefix in recipe_prefixes if recipe_prefixes is not None else [""]:
        if student:
            ops[f"{prefix}student_checkpoint"] = {"config": dict(student)}
        if scores:
            ops[f"{prefix}mteb_scores"] = {"config": dict(scores)}
    if corpus := _corpus_config(args):
        ops["qa_corpus"] = {"config": corpus}
    if args.top_k is not None:
        ops["candidate_lists"] = {"config": {"top_k": args.top_k}}
    return {"ops": ops}


def _corpus_config(args) -> dict:
    """qa_corpus run config from --lenient/--strict, --dev-share and --reset-ingest-settings (run, demo and ingest);
    what is not given keeps the dataset's stored ingest settings."""
    mode = "lenient" if args.lenient else "strict" if getattr(args, "strict", False) else None
    return {k: v for k, v in {"validation_mode": mode, "dev_share": getattr(args, "dev_share", None),
                              "reset_settings": True if getattr(args, "reset_ingest_settings", False) else None,
                              }.items() if v is not None}


def _print_failures(result) -> None:
    """Each failed step's root cause, one line per step, on stderr."""
    for event in result.all_events:
        if event.is_failure and event.step_key and event.event_specific_data.error is not None:
            print(failure_summary(event.step_key, event.event_specific_data.error), file=sys.stderr)


def _ingest(defs, instance, args, found: list[str]) -> int:
    import dagster as dg

    from resources.artifacts import DatasetArtifacts

    unknown = sorted(set(args.dataset or []) - set(found))
    if unknown:
        print(f"dataset(s) {unknown} not found in the data root (found: {', '.join(found) or 'none'})",
              file=sys.stderr)
        return 2
    job = defs.resolve_implicit_global_asset_job_def()
    config = _corpus_config(args)
    for dataset in args.dataset or found:
        result = job.execute_in_process(partition_key=dataset, instance=instance,
                                        run_config={"ops": {"qa_corpus": {"config": config}}},
                                        raise_on_error=False, asset_selection=[dg.AssetKey("qa_corpus")],
                                        tags={"launched_by": "retriever-assets cli"})
        if not result.success:
            _print_failures(result)
            return 1
        manifest = DatasetArtifacts(defs.resources["storage"], dataset).read_corpus_manifest()
        dev = (f", {manifest['dev_queries']} training queries held out as '{manifest['dev_split']}'"
               if manifest.get("dev_split") else "")
        print(f"{dataset}: {manifest['documents']} documents, {manifest['queries']} queries{dev}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retriever-assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize all assets for the bundled demo-qa data set")
    reg = sub.add_parser("register", help="register the data root's dataset folders as partitions")
    run = sub.add_parser("run", help="materialize all assets for one dataset")
    ingest = sub.add_parser("ingest", help="materialize only qa_corpus (validate, hold out the dev split) for "
                                           "datasets of the data root, e.g. before runs that cross-score on them")
    ingest.add_argument("--dataset", action="append", help="repeatable; default: every dataset found")
    ingest.add_argument("--lenient", action="store_true", help="skip and count bad records instead of failing")
    ingest.add_argument("--dev-share", type=float, help="as for run")
    for p in (demo, run, ingest):
        p.add_argument("--strict", action="store_true", help="stop at the first bad record (the default; replaces "
                       "a stored --lenient)")
        p.add_argument("--reset-ingest-settings", action="store_true", help="forget the dataset's stored ingest "
                       "settings (split names, dev share and seed, mode): defaults and RETRIEVER_DEV_SHARE apply")
    for p in (demo, reg, run, ingest):
        p.add_argument("--data-root", help="folder of BEIR dataset folders (default: the bundled one)")
        p.add_argument("--storage", help="artifact root (default .retriever_data)")
    for p in (demo, run):
        p.add_argument("--epochs", type=int)
        p.add_argument("--batch-size", type=int)
        p.add_argument("--base-model")
        p.add_argument("--max-seq-length", type=int)
        p.add_argument("--learning-rate", type=float)
        p.add_argument("--seed", type=int, help="student training seed of the recipes without their own student_seed "
                       "(default 42); a second-seed recipe such as naive-seed2 keeps its own, or it would train "
                       "the same student as its first seed")
        p.add_argument("--max-train-queries", type=int,
                       help="train each student on the same fixed subset of this many training queries")
        p.add_argument("--eval-max-seq-length", type=int,
                       help="encode length when scoring (default: the training length)")
        p.add_argument("--top-k", type=int)
        p.add_argument("--skip-teacher-scores", action="store_true",
                       help="score base and students only (a large teacher takes long to encode the test corpus)")
        p.add_argument("--lenient", action="store_true", help="skip and count bad records instead of failing")
        p.add_argument("--cross-datasets", help="also score base and students on these datasets' test splits "
                       "(comma-separated, or 'none'; default: every other registered dataset already ingested)")
        p.add_argument("--dev-share", type=float,
                       help="hold out this share of the training queries as a dev split: recipes are chosen on it "
                            "(default: the share the dataset was last ingested with, else RETRIEVER_DEV_SHARE, "
                            "else 0 = no dev split); keep it fixed per dataset")
    sub.add_parser("recipes", help="list the built-in mining recipes (usable with run --recipe NAME)")
    run.add_argument("--dataset", required=True)
    run.add_argument("--recipe", action="append",
                     help="only these recipes' lineages (repeatable): a built-in name (see the 'recipes' command) "
                          "or one from RETRIEVER_RECIPES; default: every configured recipe")
    args = parser.parse_args(argv)
    if args.command == "recipes":
        from retriever_assets.recipes import BUILTIN_RECIPES

        for name, r in BUILTIN_RECIPES.items():
            extra = "" if r.sampling == "top" else f", {r.sampling} k={r.sample_k}"
            seed = "" if r.student_seed is None else f", student seed {r.student_seed}"
            seed += "" if r.distill == "none" else f", distill {r.distill} x{r.distill_weight:g}"
            print(f"{name:30} {r.method} {r.threshold if r.threshold is not None else '':<5} teachers "
                  f"{'+'.join(r.teachers)}{extra}{seed}")
        return 0
    wanted_names = getattr(args, "recipe", None) or []
    if wanted_names:  # built-in recipes named on the command line join the configured ones
        os.environ["RETRIEVER_RECIPE_NAMES"] = ",".join(
            [*filter(None, os.environ.get("RETRIEVER_RECIPE_NAMES", "").split(",")), *wanted_names])

    _env_defaults()
    try:
        from resources import ModelsResource, teachers_from_list
        from retriever_assets.recipes import with_builtin_recipes

        kinds = ModelsResource(teachers=teachers_from_list(os.environ.get("RETRIEVER_TEACHERS"))).kinds()
        with_builtin_recipes([], [n for n in wanted_names if n not in _configured_recipe_names()], teacher_kinds=kinds)
    except Exception as exc:  # an unknown name: say so before loading anything heavy
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.data_root:
        os.environ["RETRIEVER_DATA_ROOT"] = str(Path(args.data_root).resolve())
    if args.storage:
        os.environ["RETRIEVER_STORAGE"] = args.storage
    import dagster as dg

    from retriever_assets.definitions import defs
    from retriever_assets.partitions import dataset_partitions

    instance = dg.DagsterInstance.get()
    data_root = defs.resources["data_root"]
    found, rejected = data_root.discover()
    for reason in rejected:
        print(f"skipped folder: {reason}", file=sys.stderr)
    known = set(instance.get_dynamic_partitions(dataset_partitions.name))
    new = [f for f in found if f not in known]
    if new:
        instance.add_dynamic_partitions(dataset_partitions.name, new)
    if args.command == "register":
        print(f"datasets: {', '.join(found) or 'none'} ({len(new)} new)")
        return 0
    if args.command == "ingest":
        return _ingest(defs, instance, args, found)

    from retriever_assets.definitions import LINEAGES

    # every name in wanted_names is known: checked above, before the definitions loaded
    chosen = [lineage for lineage in LINEAGES if not wanted_names or lineage.recipe.name in wanted_names]
    for line in seed_notes(args.seed, [lineage.recipe for lineage in chosen]):
        print(line, file=sys.stderr)
    dataset = "demo-qa" if args.command == "demo" else args.dataset
    if dataset not in found:
        print(f"dataset {dataset!r} not found in {data_root.root()} (found: {', '.join(found) or 'none'})",
              file=sys.stderr)
        return 2
    job = defs.resolve_implicit_global_asset_job_def()
    selection = None
    if wanted_names:
        selection = [dg.AssetKey(k) for k in ("qa_corpus", "teacher_embeddings", "candidate_lists", "leaderboard",
                                                 "best_student")]
        selection += [key for lineage in chosen for key in lineage.asset_keys()]
    prefixes = [lineage.op_prefix for lineage in chosen]
    result = job.execute_in_process(
        partition_key=dataset, instance=instance, run_config=run_config(args, prefixes), raise_on_error=False,
        tags={"launched_by": "retriever-assets cli"}, asset_selection=selection,
    )
    if not result.success:
        _print_failures(result)
        print(f"run {result.run_id} failed; the full trace is in the Dagster UI (run {result.run_id})", file=sys.stderr)
        return 1
    from resources.artifacts import DatasetArtifacts

    artifacts, warnings = DatasetArtifacts(defs.resources["storage"], dataset), []
    for lineage in chosen:
        _print_scores(artifacts, lineage.recipe.name)
        warnings += _coverage_warning(artifacts, lineage.recipe.name)
    if artifacts.best_student_file.exists():
        best = json.loads(artifacts.best_student_file.read_text())
        if best.get("selected"):
            print(f"best student by dev nDCG@10 ({best['dev_ndcg_at_10']:.4f}): {best['selected']} -> "
                  f"{best['model_dir']}")
    for line in warnings:  # last, where a user looks: a rule that left most queries without a mined negative
        print(line, file=sys.stderr)
    print(f"run id: {result.run_id} (open it with: dagster dev -w workspace.yaml)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
