"""G-constrained neural causal models over categorical and continuous features.

    from ctfjax import causal as cc, ncm
    model, params = ncm.NCM.create("D <-> C; D -> B; C -> B",
                                   {"D": 10, "C": 2, "B": 2}, rng=0)
    params, hist = ncm.fit(model, params, table, jax.random.key(1))
    model.sample(params, key, 1000, do={"C": 1})
    model.counterfactual_sample(params, {"D": d, "C": c, "B": b}, {"C": 1},
                                key)
    model.estimate_query(params, "P(B_{C=1}=1 | C=0, B=0)", key)
    ncm.fit_bounds(model, params, table, "P(B_{C=1}=1 | C=0, B=0)", key)

A feature is an int (categorical with that many values), "continuous" or a
kind of `ctfjax.causal.kinds`: `ncm.NCM.create("X -> Y", {"X": 2, "Y":
"continuous"}, rng=0)`. See `ctfjax.ncm.model` for the model and how its
noise is abducted (on the world engine `ctfjax.causal.scm`),
`ctfjax.ncm.query` for counterfactual estimates and `ctfjax.ncm.fit` for
training and min/max bounds.
"""

from ctfjax.ncm.fit import BoundsFit, default_optimizer, fit, fit_bounds
from ctfjax.ncm.fit import lambda_schedule, make_step, nll
from ctfjax.ncm.fit import optimise, total_variation, weighted_assignments
from ctfjax.ncm.model import NCM, Exogenous, Mechanisms, NCMError, Particles
from ctfjax.ncm.query import QueryPlan, estimate_query, query_value
