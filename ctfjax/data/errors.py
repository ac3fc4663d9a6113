"""The one error type every data module raises for problems a user can cause.

It lives in its own module so that every loader (MNIST sources, the Colored
MNIST and MorphoMNIST generators, CelebA) can raise it without importing the
registry in `ctfjax.data`, which imports them.
"""

from ctfjax.errors import UserError


class DataError(UserError):
  """A missing or corrupt data source, an unknown name, split or parameter."""
