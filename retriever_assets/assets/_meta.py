"""Shared metadata helpers for assets."""


import dagster as dg

OWNERS = ["team:retrieval"]


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
