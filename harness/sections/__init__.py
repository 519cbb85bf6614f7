"""Every writeup section, registered on import (Part A; Part B where present)."""

from harness.sections.registry import SECTIONS, Relation, RunContext, Section, get_section, register, run_section
from harness.sections import part_a  # noqa: F401  (registers A0 .. A1.9)

__all__ = ["SECTIONS", "Relation", "RunContext", "Section", "get_section", "register", "run_section"]
