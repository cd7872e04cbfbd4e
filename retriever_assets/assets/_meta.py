"""Shared metadata helpers for assets."""


import dagster as dg

from retriever_assets.partitions import dataset_partitions

OWNERS = ["team:retrieval"]


def stage_asset(*, group_name: str, kinds: set[str], eager: bool = True, **kwargs):
    """`dg.asset` with what every stage of the chain shares: the dataset partition, owners, code version and, for the
    chain (not the leaderboard), eager automation so a changed corpus refreshes only its own lineage."""
    if eager:
        kwargs["automation_condition"] = dg.AutomationCondition.eager()
    return dg.asset(partitions_def=dataset_partitions, group_name=group_name, kinds=kinds, owners=OWNERS,
                    code_version="1", **kwargs)


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
