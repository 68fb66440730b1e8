"""Reporting: result tables, plots and the HTML report."""

from lossensemble.reporting.tables import format_table, markdown_table, metric_columns

__all__ = ["format_table", "markdown_table", "metric_columns"]
