"""The data pipeline: a YAML list of steps run over sharded input on a process pool or Ray.

    from lmforge.data.pipeline import run_pipeline, format_report, write_report_plot
"""

from lmforge.data.pipeline.report import format_report, load_stats, write_report_plot
from lmforge.data.pipeline.run import run_pipeline

__all__ = ["format_report", "load_stats", "run_pipeline", "write_report_plot"]
