"""Fitting NCMs: maximum likelihood and min/max bounds of a query.

Data for discrete features is a weighted list of full assignments: an exact
`Table` gives its cells with their probabilities (the expected
log-likelihood under the table, a low-variance objective), a sample dict its
distinct rows with their frequencies (full-batch maximum likelihood). The
loss is -sum_j w_j log P^(v_j) with log P^ the Monte-Carlo estimate of
`NCM.log_likelihood`, fresh latent draws every step.

Min/max bounds (Xia, Pan & Bareinboim 2023): two NCMs are trained with

    loss = -sum_j w_j log P^(v_j) -/+ lambda_t * Q^

(minus for the upper bound), Q^ the differentiable query estimate of
`ctfjax.ncm.query.query_value`, lambda_t decaying log-linearly from
`lambda_start` to `lambda_end` (a large weight first moves the query, a small
one at the end restores the fit). The bounds are the query's values in the
two trained models; they approach the optimal bounds from inside as the fit
improves (every model they come from is compatible with the diagram, and
approximately with the data).

Training uses the library's one step factory (`ctfjax.train.step`), compiled
once per fit and driven by a Python loop; the step's rng is
`fold_in(rng, t)` of the fit's own key.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctfjax.causal.discrete import Table
from ctfjax.causal.query import Query
from ctfjax.ncm.model import NCM, NCMError, Params
from ctfjax.ncm.query import QueryPlan, estimate_query, query_value
from ctfjax.train.state import create_train_state
from ctfjax.train.step import make_train_step

Array = jax.Array
LossFn = Callable[[Params, Any, Array, Array], tuple[Array, dict]]


def weighted_assignments(model: NCM, data: Table | Mapping[str, Any]
                         ) -> tuple[dict[str, Array], Array, float]:
  """Data as distinct full assignments with weights summing to one.

  Args:
    model: the NCM (names, kinds and domains are checked against it).
    data: a `Table` over the model's nodes (categorical models), or
      node -> [N] samples (any kinds).

  Returns:
    (v, w, entropy): node -> [M] values, [M] weights, and the entropy of
    the distinct rows' distribution (so that loss + entropy reads as a KL
    for categorical data; for continuous data it is log N).
  """
  if isinstance(data, Table):
    if set(data.variables) != set(model.order):
      raise NCMError(f"table over {list(data.variables)} does not match the "
                     f"model's variables {list(model.order)}")
    probs = data.marginal(model.order).probs
    cells = np.argwhere(probs > 0)
    w = probs[tuple(cells.T)]
  else:
    model.check_values(data, "data")
    missing = [n for n in model.order if n not in data]
    if missing:
      raise NCMError(f"data has no column {missing[0]!r}")
    # float64 holds every int32 class and float32 value exactly.
    rows = np.stack([np.asarray(data[n], np.float64).ravel()
                     for n in model.order], 1)
    if not len(rows):
      raise NCMError("data has no rows")
    cells, counts = np.unique(rows, axis=0, return_counts=True)
    w = counts / counts.sum()
  v = {n: jnp.asarray(cells[:, i], model.features[n].dtype)
       for i, n in enumerate(model.order)}
  w = w / w.sum()
  return v, jnp.asarray(w, jnp.float32), float(-(w * np.log(w)).sum())


def nll(model: NCM, params: Params, v: Mapping[str, Array], w: Array,
        rng: Array, num_latent_samples: int) -> Array:
  """-sum_j w_j log P^(v_j), the expected negative log-likelihood."""
  return -jnp.sum(w * model.log_likelihood(params, v, rng,
                                           num_latent_samples))


def default_optimizer(learning_rate: float, steps: int
                      ) -> optax.GradientTransformation:
  """Adam with a cosine decay to 5% of `learning_rate` over `steps`: the
  Monte-Carlo likelihood is a noisy objective, and the decay averages the
  noise out of the final parameters (the fit quality the bounds rest on)."""
  return optax.adam(optax.cosine_decay_schedule(learning_rate, steps,
                                                alpha=0.05))


def make_step(loss_fn: LossFn, optimizer: optax.GradientTransformation
              ) -> Callable:
  """The library's one training step (`ctfjax.train.make_train_step`) for
  `loss_fn(params, batch, rng, t) -> (loss, metrics)`, with step keys
  `fold_in(rng, t)` of the key `optimise` is given."""
  return make_train_step(loss_fn, optimizer, loss_takes_step=True,
                         stream=None)


def optimise(step: Callable, optimizer: optax.GradientTransformation,
             params: Params, batch: Any, rng: Array, steps: int
             ) -> tuple[Params, dict[str, np.ndarray]]:
  """Runs `steps` steps of `step = make_step(loss_fn, optimizer)` from a
  fresh optimiser state.

  Returns:
    (params, history): history maps each metric to its [steps] values.
  """
  # The step donates its state: `params` and `rng` must survive for the
  # caller (who may well reuse the key).
  params = jax.tree.map(jnp.copy, params)
  state = create_train_state(jnp.copy(rng), lambda _: params, optimizer)
  history = []
  for _ in range(int(steps)):
    state, metrics = step(state, batch)
    history.append(metrics)  # device arrays: no host sync per step
  history = jax.device_get(history)
  return state.params, {k: np.array([m[k] for m in history]) for k in
                        (history[0] if history else {})}


def fit(model: NCM, params: Params, data: Table | Mapping[str, Any],
        rng: Array, *, steps: int = 2000, learning_rate: float = 3e-3,
        num_latent_samples: int = 256,
        optimizer: optax.GradientTransformation | None = None,
        ) -> tuple[Params, dict[str, np.ndarray]]:
  """Maximum-likelihood fit of the NCM to a table or to samples.

  Args:
    model: the NCM.
    params: initial parameters.
    data: an exact `Table` over the model's nodes, or node -> [N] samples.
    rng: PRNG key (step t uses fold_in(rng, t)).
    steps: optimiser steps (each on the whole weighted data).
    learning_rate: initial step size of `default_optimizer` (ignored when
      `optimizer` is given).
    num_latent_samples: Monte-Carlo latent draws per step.
    optimizer: an optax optimizer (default `default_optimizer`).

  Returns:
    (params, history): history["loss"] is the negative log-likelihood per
    step and history["kl"] that minus the data entropy (the KL from the data
    distribution, up to Monte-Carlo bias).
  """
  v, w, entropy = weighted_assignments(model, data)
  m = int(num_latent_samples)

  def loss_fn(p, batch, key, t):
    del t
    loss = nll(model, p, *batch, key, m)
    return loss, {"kl": loss - entropy}

  optimizer = optimizer or default_optimizer(learning_rate, steps)
  return optimise(make_step(loss_fn, optimizer), optimizer, params,
                  (v, w), rng, steps)


def total_variation(model: NCM, params: Params, table: Table, rng: Array,
                    num_latent_samples: int = 200_000) -> float:
  """TV(P^, P) = 1/2 sum_v |P^(v) - P(v)| with P^ from `model_table`."""
  est = model.model_table(params, rng, num_latent_samples)
  ref = table.marginal(est.variables).probs
  return 0.5 * float(np.abs(est.probs - ref).sum())


@dataclasses.dataclass
class BoundsFit:
  """Result of `fit_bounds`.

  Attributes:
    lower, upper: the query in the minimising / maximising NCM.
    params_lower, params_upper: those NCMs' parameters.
    tv_lower, tv_upper: their total variation distance to the table.
    history_lower, history_upper: per-step metrics ("loss", "kl", "q",
      "lambda").
    seconds: wall-clock training time.
  """

  lower: float
  upper: float
  params_lower: Params
  params_upper: Params
  tv_lower: float
  tv_upper: float
  history_lower: dict[str, np.ndarray]
  history_upper: dict[str, np.ndarray]
  seconds: float


def lambda_schedule(t: Array, steps: int, start: float, end: float
                    ) -> Array:
  """Log-linear decay from `start` (t = 0) to `end` (t = steps - 1)."""
  frac = jnp.clip(t / max(steps - 1, 1), 0.0, 1.0)
  return jnp.exp(jnp.log(start) + frac * (jnp.log(end) - jnp.log(start)))


def fit_bounds(model: NCM, params: Params, table: Table,
               query: Query | str, rng: Array, *, steps: int = 3000,
               learning_rate: float = 3e-3, lambda_start: float = 1.0,
               lambda_end: float = 1e-2, num_latent_samples: int = 256,
               num_particles: int = 2048, temperature: float = 1.0,
               eval_particles: int = 200_000,
               eval_latent_samples: int = 200_000,
               optimizer: optax.GradientTransformation | None = None,
               ) -> BoundsFit:
  """Min/max NCM bounds of a counterfactual query (Xia, Pan & Bareinboim).

  Both runs start from `params` (e.g. a maximum-likelihood fit, so that the
  query term only has to move within the compatible models).

  Args:
    model: the NCM.
    params: starting parameters of both runs.
    table: the observational distribution P(V).
    query: the counterfactual query, e.g. 'P(B_{C=1}=1 | C=0, B=0)'.
    rng: PRNG key.
    steps: optimiser steps per run.
    learning_rate: initial step size of `default_optimizer`.
    lambda_start, lambda_end: the query weight's log-linear schedule.
    num_latent_samples: latent draws of the likelihood per step.
    num_particles: particles of the query estimate per step.
    temperature: straight-through relaxation temperature.
    eval_particles: particles for reading off the final query values.
    eval_latent_samples: latent draws for the final TV distances.
    optimizer: an optax optimizer (default `default_optimizer`).

  Returns:
    A `BoundsFit`.
  """
  plan = QueryPlan.build(model, query)
  v, w, entropy = weighted_assignments(model, table)
  m, n = int(num_latent_samples), int(num_particles)
  optimizer = optimizer or default_optimizer(learning_rate, steps)

  def loss_fn(p, batch, key, t):
    v, w, sign = batch  # sign +1 minimises the query, -1 maximises it
    key_l, key_q = jax.random.split(key)
    loss = nll(model, p, v, w, key_l, m)
    q, _ = query_value(model, p, plan, key_q, n, temperature)
    lam = lambda_schedule(t, steps, lambda_start, lambda_end)
    return loss + sign * lam * q, {"kl": loss - entropy, "q": q,
                                   "lambda": lam}

  # The sign is data, not structure: both runs share one compilation.
  step = make_step(loss_fn, optimizer)
  start = time.time()
  runs = {}
  for name, sign in (("lower", 1.0), ("upper", -1.0)):
    runs[name] = optimise(step, optimizer, params, (v, w, jnp.float32(sign)),
                          jax.random.fold_in(rng, int(sign > 0)), steps)
  seconds = time.time() - start
  key_q, key_tv = jax.random.split(jax.random.fold_in(rng, 2))
  value = lambda p: estimate_query(model, p, plan.query, key_q,
                                   eval_particles)
  tv = lambda p: total_variation(model, p, table, key_tv,
                                 eval_latent_samples)
  (p_lo, h_lo), (p_hi, h_hi) = runs["lower"], runs["upper"]
  return BoundsFit(value(p_lo), value(p_hi), p_lo, p_hi, tv(p_lo), tv(p_hi),
                   h_lo, h_hi, seconds)
