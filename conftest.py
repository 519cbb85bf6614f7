"""Project-wide pytest set-up: offline, fixed thread count, and the golden/backend options."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from harness.runner import fix_threads  # noqa: E402

fix_threads()


def pytest_addoption(parser):
    group = parser.getgroup("diffusion-harness")
    group.addoption("--update-golden", action="store_true",
                    help="(over)write the golden files of the cases that run instead of comparing")
    group.addoption("--backend", action="append", default=None,
                    help="backend(s) to reproduce on (repeatable); default: the embedded CPU backends")
    group.addoption("--device", default="cpu", help="torch device for the reproduction cases (cpu, cuda)")


@pytest.fixture(scope="session")
def device(request) -> str:
    return request.config.getoption("--device")
