"""On/off switches read from environment variables (``1`` or ``0``)."""

import os

from ctfjax.errors import UserError


def switch(variable: str, on: str, off: str) -> bool:
  """Whether `variable` (``1`` or unset: on; ``0``: off) is on.

  Args:
    variable: the environment variable's name.
    on, off: what each value means, for the error message.

  Raises:
    UserError: naming the variable and its value, for any other value.
  """
  setting = os.environ.get(variable, "1")
  if setting not in ("0", "1"):
    raise UserError(f"{variable}={setting!r}: use 1 ({on}) or 0 ({off})")
  return setting == "1"
