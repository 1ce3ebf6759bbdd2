"""The one exception type for mistakes a user can fix.

The CLI prints its message as a single line and exits with status 2; notebooks show it
as an ordinary exception. Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, phrased as: what, where, what to do."""


class OtherRankFailed(Exception):
    """Under torchrun: rank 0 stopped with an error before training began; it has said why."""


class WeightsUnavailable(UserError):
    """ImageNet weights are needed but neither cached, given, nor downloadable."""
