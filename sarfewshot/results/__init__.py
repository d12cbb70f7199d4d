"""Results: per-cell records, aggregation, leaderboard export and plots.

Python with numpy, scipy, statsmodels (run-unit tests) and tabulate (matplotlib only for
:mod:`sarfewshot.results.plots`): nothing here imports torch, the engine or the models, so
tables can be built on any machine.
"""

from __future__ import annotations

from sarfewshot.results.aggregate import Row, Summary, aggregate_records, summarize
from sarfewshot.results.compare import paired_compare
from sarfewshot.results.dassl_logs import parse_dassl_log, records_from_dassl_runs
from sarfewshot.results.export import table_text, write_csv, write_latex, write_markdown
from sarfewshot.results.records import (
    SCHEMA_VERSION,
    RecordError,
    cell_id,
    collect_versions,
    config_fingerprint,
    iter_records,
    make_record,
    read_record,
    record_exists,
    record_path,
    write_record,
)
from sarfewshot.results.runcompare import run_compare

__all__ = [
    "SCHEMA_VERSION",
    "RecordError",
    "Row",
    "Summary",
    "aggregate_records",
    "cell_id",
    "collect_versions",
    "config_fingerprint",
    "iter_records",
    "make_record",
    "paired_compare",
    "parse_dassl_log",
    "read_record",
    "record_exists",
    "record_path",
    "records_from_dassl_runs",
    "run_compare",
    "summarize",
    "table_text",
    "write_csv",
    "write_latex",
    "write_markdown",
    "write_record",
]
