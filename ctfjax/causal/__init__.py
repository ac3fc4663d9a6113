"""Exact causal maths: diagrams, SCMs, counterfactual inference and bounds.

Nothing in this package is neural; it is tested on its own against hand
computations and brute force.
"""

from ctfjax.causal.discrete import DiscreteSCM, Mechanism, SCMError, Table
from ctfjax.causal.graph import Graph, GraphError
from ctfjax.causal.inference import ZeroProbabilityError, distribution, joint
from ctfjax.causal.inference import posterior_exogenous, probability, query
from ctfjax.causal.inference import sample_posterior
from ctfjax.causal.query import Query, QueryError, Term, Variable
from ctfjax.causal.optimal_bounds import Bounds, BoundsError, bounds
from ctfjax.causal.optimal_bounds import bounds_certificate
from ctfjax.causal import gumbel
from ctfjax.causal import inference
from ctfjax.causal import kinds
from ctfjax.causal import spline
from ctfjax.causal import scm
from ctfjax.causal import worlds
