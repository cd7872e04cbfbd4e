"""Shared metadata helpers for assets."""


import functools

import dagster as dg

from retriever_assets.partitions import dataset_partitions
from retriever_assets.steps.memory import StepMeter

OWNERS = ["team:retrieval"]


def stage_asset(*, group_name: str, kinds: set[str], eager: bool = True, **kwargs):
    """`dg.asset` with what every stage of the chain shares: the dataset partition, owners, code version and, for the
    chain (not the leaderboard), eager automation so a changed corpus refreshes only its own lineage."""
    if eager:
        kwargs["automation_condition"] = dg.AutomationCondition.eager()
    decorate = dg.asset(partitions_def=dataset_partitions, group_name=group_name, kinds=kinds, owners=OWNERS,
                        code_version="1", **kwargs)
    return lambda fn: decorate(metered(fn))


def metered(fn):
    """Run an asset body under a `StepMeter`: its peak RSS (`peak_rss_mib`; `step_peak_rss_mib` when the step
    reports a peak of its own, e.g. training's) and the RSS left once freed memory went back to the OS
    (`rss_after_mib`) join the materialization's metadata."""

    @functools.wraps(fn)
    def body(*args, **kwargs):
        with StepMeter() as meter:
            result = fn(*args, **kwargs)
        if isinstance(result, dg.MaterializeResult):
            metadata = dict(result.metadata or {})
            metadata["step_peak_rss_mib" if "peak_rss_mib" in metadata else "peak_rss_mib"] = meter.peak_mib
            metadata["rss_after_mib"] = meter.rss_after_mib
            result = result._replace(metadata=metadata)
        return result

    return body


def table(rows: list[dict], *, columns: list[str] | None = None) -> dg.TableMetadataValue:
    """A Dagster table from dict rows (values converted to str/float/int/bool as they are)."""
    columns = columns or list(dict.fromkeys(c for row in rows for c in row))  # every row's keys, in order
    records = []
    for row in rows:
        values = {}
        for c in columns:
            v = row.get(c)
            values[c] = v if isinstance(v, (int, float, bool)) or v is None else str(v)
        records.append(dg.TableRecord(values))
    schema = dg.TableSchema(columns=[dg.TableColumn(c, _kind(rows, c)) for c in columns])
    return dg.MetadataValue.table(records, schema=schema)


def _kind(rows: list[dict], column: str) -> str:
    for row in rows:
        v = row.get(column)
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int):
            return "int"
        if isinstance(v, float):
            return "float"
        if v is not None:
            return "string"
    return "string"
