"""Part A (DeepFloyd IF): every section as a seeded, golden-checked case."""

from reproductions.check import check_case

PART = "A"


def test_reproduces(case, device, request):
    check_case(case, device, request.config.getoption("--update-golden"))
