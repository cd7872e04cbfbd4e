"""Reading a parquet file sorted by a key, forward, for a few rows at a time: what lets a step walk a corpus-sized
file (texts, cached BM25 terms) in key order while holding one batch, never the file."""

from __future__ import annotations

from pathlib import Path

import polars as pl


class SortedParquetReader:
    """Rows of a parquet file sorted by `key`, looked up by key in ascending order (`rows(keys)`), read forward
    in batches of `batch_rows`: only the rows asked for and the tail of the current batch are kept. Keys asked for
    out of order restart the read from the beginning (correct, just slower)."""

    def __init__(self, path: Path, columns: list[str], *, key: str = "doc_id", batch_rows: int = 16384):
        self.path, self.key, self.batch_rows = path, key, batch_rows
        self.columns = [key] + [c for c in columns if c != key]
        self._restart()

    def _restart(self) -> None:
        import pyarrow.parquet as pq

        self._batches = pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows, columns=self.columns)
        self._ahead: pl.DataFrame | None = None
        self._read_up_to: str | None = None  # the largest key read from the file
        self._served: str | None = None  # the largest key handed out

    def rows(self, keys: pl.Series) -> pl.DataFrame:
        """The rows whose key is in `keys` (any found; missing keys are simply absent), in file order."""
        if keys.is_empty():
            return self._empty()
        first, last = keys.min(), keys.max()
        if self._served is not None and first <= self._served:
            self._restart()
        wanted = keys.implode()
        key = pl.col(self.key)
        found, ahead = [], []
        if self._ahead is not None:
            found.append(self._ahead.filter(key.is_in(wanted)))
            ahead.append(self._ahead.filter(key > last))
        while self._read_up_to is None or self._read_up_to < last:
            batch = next(self._batches, None)
            if batch is None:
                break
            frame = pl.from_arrow(batch)
            self._read_up_to = frame[self.key].max()
            found.append(frame.filter(key.is_in(wanted)))  # only what is asked for is kept,
            ahead.append(frame.filter(key > last))  # and what later calls may ask for
        self._ahead = pl.concat(ahead) if ahead else None
        self._served = last
        return pl.concat(found) if found else self._empty()

    def _empty(self) -> pl.DataFrame:
        import pyarrow.parquet as pq

        return pl.from_arrow(pq.read_schema(self.path).empty_table().select(self.columns))
