"""Every writeup section, registered on import (Part A and Part B)."""

from harness.sections.registry import SECTIONS, Relation, RunContext, Section, get_section, register, run_section

__all__ = ["SECTIONS", "Relation", "RunContext", "Section", "get_section", "register", "run_section"]
