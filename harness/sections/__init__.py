"""Every writeup section, registered on import (Part A; Part B where present)."""

from harness.sections.registry import SECTIONS, Relation, RunContext, Section, get_section, register, run_section
from harness.sections import part_a, part_b  # noqa: F401  (register A0 .. A1.9, B1.2 .. B2.5)

__all__ = ["SECTIONS", "Relation", "RunContext", "Section", "get_section", "register", "run_section"]
