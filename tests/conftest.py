import os

import pytest

# Tests never reach for a model hub: every model and dataset is packaged or built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



@pytest.fixture(scope="session")
def work(tmp_path_factory):
    """A small prepared rt task and one trained checkpoint of each teacher kind (tests/checkpoints.py), built once."""
    from tests.checkpoints import build_work

    return build_work(tmp_path_factory.mktemp("checkpoints"))


# Fixtures that run DVC, stages in subprocesses or several processes: a test using one is slow.
SLOW_FIXTURES = {"glue_repo", "oof_repo", "trained", "stage_dir", "dvc_repo"}
SLOW_MODULES = {"test_distill.py"}  # trains students seed by seed, in worker processes too
SLOW_TESTS = {"test_prepare_stage_in_a_temp_copy",  # a stage in a subprocess each (5–13 s)
              "test_stage_refuses_more_folds_than_the_rarest_class", "test_stage_refuses_tampered_oof_ids_and_keeps_outputs",
              "test_hub_id_not_in_the_offline_cache_is_one_line_from_the_stage", "test_glue_profile_generates_a_pipeline",
              "test_stage_exits_nonzero_with_one_line_and_writes_nothing"}


def pytest_collection_modifyitems(config, items):
    """Marks the end-to-end tests ``slow`` (modules may also set ``pytestmark``): ``pytest -m "not slow"``."""
    for item in items:
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SLOW_MODULES
                or item.originalname in SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
