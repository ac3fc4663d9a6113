r"""The 4-pixel ASCM of Sardesai (docs/causal.md) as a NumPyro model file.

    python -m launch.query --model=examples/four_pixel_numpyro.py:model \
        --domains=I=16 --distribution="I_{X=1}" --given="I=5" \
        --backend=numpyro

X = u_x xor u_xy, Y = u_y xor u_xy; the image I is the pixels
(u_x and X, Y, X xor u_I, X xor Y xor u_I) read as a 4-bit number, first
pixel most significant. It never draws 1111, so `--domains=I=16` gives I
its full 16 values. `DiscreteSCM.from_numpyro(model, domains={"I": 16})`
is `ctfjax.causal.examples.four_pixel_ascm()`.
"""

import jax.numpy as jnp
import numpyro
from numpyro import distributions as dist


def model():
  """Exogenous sample sites, endogenous deterministic sites."""
  u_x = numpyro.sample("u_x", dist.Categorical(probs=jnp.array([0.4, 0.6])))
  u_y = numpyro.sample("u_y", dist.Categorical(probs=jnp.array([0.6, 0.4])))
  u_xy = numpyro.sample("u_xy", dist.Bernoulli(probs=0.5))
  u_i = numpyro.sample("u_I", dist.Bernoulli(probs=0.5))
  x = numpyro.deterministic("X", u_x ^ u_xy)
  y = numpyro.deterministic("Y", u_y ^ u_xy)
  pixels = [u_x & x, y, x ^ u_i, x ^ y ^ u_i]  # I1 I2 I3 I4
  numpyro.deterministic("I", 8 * pixels[0] + 4 * pixels[1]
                        + 2 * pixels[2] + pixels[3])
