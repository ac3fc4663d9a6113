r"""CGN and DEAR, the comparison models of Pan & Bareinboim, on Colored MNIST.

    python -m launch.run \
        --config=configs/compare_cgn_dear_colored_mnist.py \
        --workdir=runs/compare_cgn_dear_backdoor
    python -m launch.run \
        --config=configs/compare_cgn_dear_colored_mnist.py \
        --config.data.name=colored_mnist_bars/frontdoor \
        --workdir=runs/compare_cgn_dear_frontdoor

Pan & Bareinboim ("Counterfactual Image Editing", ICML 2024) compare the
ANCM with CVAE, CGN and DEAR. Two variants of the quickstart's run
(configs/quickstart.py: bundled digits, batch 32, 1,500 steps), both under
the edgeless diagram `cvae_noncausal` (the feature model changes the
intervened feature alone; docs/models.md, "CGN" and "DEAR"):

* "cgn": Sauer & Geiger's counterfactual generative network
  (ctfjax/mechanisms/cgn.py): a mask from D, a foreground colour from C
  and a background (the bar) from B, composed as m f + (1 - m) b. It
  ignores every edge between attributes;
* "dear": Shen et al.'s DEAR (ctfjax/mechanisms/dear.py): a generator of
  a latent whose factor codes follow a linear SCM on a super-graph, by
  default the true diagram's directed edges (backdoor D -> B, C -> B;
  frontdoor D -> C, C -> B); an edit intervenes on the codes and the SCM
  carries it to the descendants.

Both read the features' layout and the diagrams from the model
(`ctfjax.mechanisms.Features`): CGN's mechanisms read D, C and B, the
features in the model's order, and DEAR's super-graph is the dataset's,
so the two datasets differ only in `data.name`.

The benchmark grid (configs/benchmark_colored_mnist.py) runs this config
on both graphs. The argument is the size preset
(`configs/compare_cgn_dear_colored_mnist.py:tiny`); at `cpu` both models
train in about 20 minutes on 2 cores.
"""

import ml_collections

from configs import ancm
from configs import quickstart

def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.data.name = "colored_mnist_bars/backdoor"
  config.run.variants = ml_collections.ConfigDict()
  config.run.variants.cgn = ml_collections.ConfigDict({
      "diagram": "cvae_noncausal",
      "overrides": {"model": {"image": {"kind": "cgn"}}}})
  config.run.variants.dear = ml_collections.ConfigDict({
      "diagram": "cvae_noncausal",
      "overrides": {"model": {"image": {"kind": "dear"}}}})
  config.run.models = ("cgn", "dear")
  return ancm.sized(config, arg)
