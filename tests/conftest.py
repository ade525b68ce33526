import os

# Tests never reach for a model hub: every model and dataset is packaged or built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    """A small prepared rt task and one trained checkpoint of each teacher kind (tests/checkpoints.py), built once."""
    from tests.checkpoints import build_work

    return build_work(tmp_path_factory.mktemp("checkpoints"))
