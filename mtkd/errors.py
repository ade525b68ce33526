"""One exception type for every user-facing failure.

Stages catch it at the edge (``mtkd.cli.main``) and print a single line naming the
offending key, file or package, then exit non-zero without a traceback.
"""


class MtkdError(Exception):
    """A problem the user can fix: bad params, a missing asset, inconsistent logits."""
