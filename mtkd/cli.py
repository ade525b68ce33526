"""What every stage entry point shares: logging, threads, offline mode and the error edge."""

from __future__ import annotations

import functools
import logging
import os
import sys

from mtkd.errors import MtkdError

log = logging.getLogger("mtkd")


def stage(fn):
    """Run ``fn`` as a stage: ``MtkdError`` → one line on stderr and exit 2; Ctrl-C → one line, exit 130."""

    @functools.wraps(fn)
    def wrapper(argv=None):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)
        # Never reach for a model hub unless the user opted in; assets are local.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import transformers

            # Load reports ("classifier.weight MISSING") are expected for a fresh head: keep logs readable.
            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
            return fn(argv)
        except MtkdError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            # Every write is temp-then-rename (mtkd.io), so what exists is whole; the rest is absent.
            print("interrupted: stopped without leaving a partial output; re-run to finish", file=sys.stderr)
            sys.exit(130)

    return wrapper


def set_threads(runtime) -> None:
    """``runtime.num_threads``, or ``MTKD_NUM_THREADS`` when set.

    The environment variable is for running queued experiments side by side
    (``MTKD_NUM_THREADS=1 dvc queue start -j 2``) without touching params, which would
    invalidate every cached stage that declares them.
    """
    import torch

    env = os.environ.get("MTKD_NUM_THREADS")
    if env is not None and not (env.isdigit() and int(env) >= 1):
        raise MtkdError(f"MTKD_NUM_THREADS: must be a positive integer, got {env!r}")
    torch.set_num_threads(int(env) if env else runtime.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
