"""Exact inference against brute-force enumeration and hand recursions."""

import itertools

import jax
import numpy as np
import pytest

from ctfjax import causal as cc

SPEC = {
    "exogenous": {"u_x": [0.4, 0.6], "u_xy": [0.5, 0.5], "u_y": [0.7, 0.3]},
    "endogenous": {
        "X": {"domain": 2, "inputs": ["u_x", "u_xy"], "table": [[0, 1], [1, 0]]},  # noqa: E501
        "Y": {"domain": 2, "inputs": ["X", "u_y"], "table": [[0, 1], [1, 1]]},
    },
}


def brute_force(scm, terms):
  """P(conjunction of terms) by listing every exogenous state."""
  names = list(scm.exogenous)
  total = 0.0
  for state in itertools.product(*[range(len(scm.exogenous[u]))
                                   for u in names]):
    u = {n: np.array(s) for n, s in zip(names, state)}
    p = np.prod([scm.exogenous[n][s] for n, s in zip(names, state)])
    worlds = {}
    ok = True
    for t in terms:
      if t.world not in worlds:
        worlds[t.world] = scm.evaluate(u, do=dict(t.world))
      ok &= int(worlds[t.world][t.name]) == t.value
    total += p * ok
  return total


def brute_query(scm, text):
  q = cc.Query.parse(text)
  return brute_force(scm, q.terms) / brute_force(scm, q.evidence)


def random_scm(rng, n_nodes=4):
  """A random discrete SCM with shared (confounding) exogenous inputs."""
  names = [f"V{i}" for i in range(n_nodes)]
  exo = {}
  endo = {}
  for i in range(len(names)):
    exo[f"u{i}"] = rng.dirichlet(np.ones(rng.integers(2, 4))).tolist()
  exo["c0"] = rng.dirichlet(np.ones(2)).tolist()
  exo["c1"] = rng.dirichlet(np.ones(3)).tolist()
  domains = {v: int(rng.integers(2, 4)) for v in names}
  sizes = {**{k: len(p) for k, p in exo.items()}, **domains}
  for i, v in enumerate(names):
    parents = [p for p in names[:i] if rng.random() < 0.6]
    shared = [c for c in ("c0", "c1") if rng.random() < 0.5]
    inputs = parents + [f"u{i}"] + shared
    shape = [sizes[k] for k in inputs]
    endo[v] = {"domain": domains[v], "inputs": inputs,
               "table": rng.integers(0, domains[v], size=shape).tolist()}
  return cc.DiscreteSCM.from_dict({"exogenous": exo, "endogenous": endo})


def test_hand_example():
  scm = cc.DiscreteSCM.from_dict(SPEC)
  assert str(scm.graph) == "X -> Y"
  table = scm.observational()
  # X = u_x xor u_xy is Bern(1/2); Y = u_y if X = 0 else 1.
  np.testing.assert_allclose(table.probs, [[0.35, 0.15], [0.0, 0.5]])
  assert cc.query(scm, "P(Y_{X=1}=1 | X=0, Y=0)") == pytest.approx(1.0)
  assert cc.query(scm, "P(Y_{X=0}=1)") == pytest.approx(0.3)
  assert cc.distribution(scm, "Y_{X=0}", given="X=1") == pytest.approx(
      {0: 0.7, 1: 0.3})


def test_shared_exogenous_induces_bidirected_edge():
  spec = {"exogenous": {"u": [0.5, 0.5]},
          "endogenous": {"A": {"domain": 2, "inputs": ["u"], "table": [0, 1]},
                         "B": {"domain": 2, "inputs": ["u"], "table": [1, 0]}}}
  scm = cc.DiscreteSCM.from_dict(spec)
  assert scm.graph == cc.Graph.parse("A <-> B")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_random_models_match_brute_force(seed):
  rng = np.random.default_rng(seed)
  scm = random_scm(rng, n_nodes=2 + seed % 4)  # 2 to 5 variables
  dom = scm.domains
  names = list(dom)
  pick = lambda v: int(rng.integers(dom[v]))
  x, y = names[0], names[-1]
  z = names[1] if len(names) > 2 else x
  queries = [
      f"P({y}={pick(y)})",
      f"P({y}_{{{x}={pick(x)}}}={pick(y)})",
      f"P({y}_{{{x}={pick(x)}}}={pick(y)} | {x}={pick(x)}, {y}={pick(y)})",
      (f"P({y}_{{{x}={pick(x)}}}={pick(y)}, {z}_{{{y}={pick(y)}}}={pick(z)}"
       f" | {z}={pick(z)}, {y}_{{{z}={pick(z)}}}={pick(y)})"),
  ]
  for text in queries:
    q = cc.Query.parse(text)
    if brute_force(scm, q.evidence) == 0:
      with pytest.raises(cc.ZeroProbabilityError, match="probability zero"):
        cc.query(scm, q)
    else:
      assert cc.query(scm, q) == pytest.approx(brute_query(scm, text),
                                               abs=1e-12), text
  # Observational and interventional tables.
  table = scm.observational()
  for cell in itertools.product(*[range(dom[v]) for v in names]):
    terms = [cc.Term(cc.Variable(v), c) for v, c in zip(names, cell)]
    assert table.probs[cell] == pytest.approx(brute_force(scm, terms),
                                              abs=1e-12)
  do = {x: 1}
  inter = cc.joint(scm, [y, z], do=do)
  world = tuple(do.items())
  for cell in itertools.product(range(dom[y]), range(dom[z])):
    terms = [cc.Term(cc.Variable(y, world), cell[0]),
             cc.Term(cc.Variable(z, world), cell[1])]
    assert inter.probs[cell] == pytest.approx(brute_force(scm, terms),
                                              abs=1e-12)


def chain(n, seed=0):
  rng = np.random.default_rng(seed)
  exo = {f"u{i}": rng.dirichlet(np.ones(3)).tolist() for i in range(n)}
  endo = {}
  for i in range(n):
    shape = (2, 3) if i else (3,)
    endo[f"V{i}"] = {"domain": 2,
                     "inputs": ([f"V{i-1}"] if i else []) + [f"u{i}"],
                     "table": rng.integers(0, 2, size=shape).tolist()}
  return cc.DiscreteSCM.from_dict({"exogenous": exo, "endogenous": endo})


def chain_recursion(scm, n, x, y_cf, y_fact):
  """P(V_{n-1, V0=x} = y_cf, V_{n-1} = y_fact) by a forward pass over pairs.

  The state is the joint law of (factual V_i, counterfactual V_i); both copies
  read the same u_i, so one step is a sum over u_i: independent of the
  twin-network machinery.
  """
  p0, t0 = scm.exogenous["u0"], scm.endogenous["V0"].table
  state = np.zeros((2, 2))
  for u, pu in enumerate(p0):
    state[t0[u], x] += pu
  for i in range(1, n):
    pu, t = scm.exogenous[f"u{i}"], scm.endogenous[f"V{i}"].table
    nxt = np.zeros((2, 2))
    for a, b, u in itertools.product(range(2), range(2), range(3)):
      nxt[t[a, u], t[b, u]] += state[a, b] * pu[u]
    state = nxt
  return state[y_fact, y_cf]


def test_long_chain_is_exact_without_enumerating_states():
  n = 30  # 3^30 exogenous states: a dense enumeration is impossible
  scm = chain(n, seed=3)
  y = f"V{n-1}"
  for x, y_cf, y_fact in [(1, 1, 0), (0, 0, 1), (1, 0, 0)]:
    want = chain_recursion(scm, n, x, y_cf, y_fact)
    den = sum(chain_recursion(scm, n, x, c, y_fact) for c in range(2))
    got = cc.query(scm, f"P({y}_{{V0={x}}}={y_cf} | {y}={y_fact})")
    assert got == pytest.approx(want / den, abs=1e-12)


def test_posterior_exogenous_and_sampling():
  scm = cc.DiscreteSCM.from_dict(SPEC)
  post = cc.posterior_exogenous(scm, "X=0, Y=0")
  # X=0, Y=0 needs u_y=0 and u_x == u_xy: weights 0.4*0.5 and 0.6*0.5.
  assert post.variables == ("u_x", "u_xy", "u_y")
  np.testing.assert_allclose(post.probs[:, :, 0], [[0.4, 0], [0, 0.6]])
  assert post.probs[:, :, 1].sum() == 0
  draws = cc.sample_posterior(scm, "X=0, Y=0", jax.random.key(0), 4000)
  v = scm.evaluate(draws)
  assert np.all(v["X"] == 0) and np.all(v["Y"] == 0)
  assert abs(draws["u_x"].mean() - 0.6) < 0.03


def test_bad_input():
  scm = cc.DiscreteSCM.from_dict(SPEC)
  with pytest.raises(cc.QueryError, match="unknown variable 'Z'"):
    cc.query(scm, "P(Z=1)")
  with pytest.raises(cc.QueryError, match="value 3 of 'Y'"):
    cc.query(scm, "P(Y=3)")
  with pytest.raises(cc.ZeroProbabilityError, match="X=1, Y=0"):
    cc.query(scm, "P(Y_{X=0}=1 | X=1, Y=0)")
  with pytest.raises(cc.ZeroProbabilityError):
    cc.query(scm, "P(Y=1 | X_{X=0}=1)")


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["exogenous"].update(u_y=[0.7, 0.4]), "sum to 1.1"),
    (lambda s: s["exogenous"].update(u_y=[1.2, -0.2]), "negative"),
    (lambda s: s["endogenous"]["Y"].update(table=[[0, 1], [1, 2]]),
     "value 2 outside its domain 0..1"),
    (lambda s: s["endogenous"]["Y"].update(table=[[0, 1]]),
     r"has shape \(1, 2\); its inputs \['X', 'u_y'\] need \(2, 2\)"),
    (lambda s: s["endogenous"]["Y"].update(inputs=["X", "u_q"]),
     "unknown input 'u_q'"),
    (lambda s: s["endogenous"]["X"].update(inputs=["Y", "u_x"],
                                           table=[[0, 1], [1, 0]]),
     "not acyclic: cycle"),
    (lambda s: s["endogenous"]["Y"].pop("domain"), "missing 'domain'"),
    (lambda s: s.update(extra=1), "unknown SCM spec key 'extra'"),
])
def test_spec_errors(mutate, message):
  import copy  # pylint: disable=g-import-not-at-top
  spec = copy.deepcopy(SPEC)
  mutate(spec)
  with pytest.raises(cc.SCMError, match=message):
    cc.DiscreteSCM.from_dict(spec)


def test_json_round_trip(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  scm = cc.DiscreteSCM.from_dict(SPEC)
  path = tmp_path / "scm.json"
  path.write_text(json.dumps(scm.to_dict()))
  again = cc.DiscreteSCM.from_json(path)
  np.testing.assert_array_equal(again.observational().probs,
                                scm.observational().probs)
  with pytest.raises(cc.SCMError, match="does not exist"):
    cc.DiscreteSCM.from_json(tmp_path / "nope.json")
  (tmp_path / "bad.json").write_text("{")
  with pytest.raises(cc.SCMError, match="not valid JSON"):
    cc.DiscreteSCM.from_json(tmp_path / "bad.json")
