"""The base class of every error a user can cause.

Launchers catch `UserError` at the boundary and print its one-line message
with exit code 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
  """Bad input from a user: a spec, query, image, config or file."""
