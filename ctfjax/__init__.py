"""ctfjax: counterfactual image editing with causal generative models in JAX."""

__version__ = "0.1.0"
