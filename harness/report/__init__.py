"""The reproduction report: a static site of every case's pictures, laid out as the writeups lay them
out, with metrics beside their goldens, the benchmarks and the environment (``python -m harness report``)."""

from harness.report.build import build_report

__all__ = ["build_report"]
