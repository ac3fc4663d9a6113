"""Dataset registry, atomic cache and the sharded batch iterator."""

import json

import numpy as np
import pytest

from ctfjax import data
from ctfjax.data import storage


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv(storage.DATA_DIR_ENV, str(tmp_path))
  return tmp_path


def test_unknown_name_lists_known_names():
  with pytest.raises(data.DataError) as e:
    data.load("colored_mnist")
  msg = str(e.value)
  assert "\n" not in msg
  for name in data.NAMES:
    assert name in msg
  with pytest.raises(data.DataError, match="known:"):
    data.feature_scm("mnist")


def test_names_without_scm_or_truth_raise(tmp_path):
  real = data.dataset("celeba/paper", source=str(tmp_path))
  with pytest.raises(data.DataError, match="no exact discrete feature SCM"):
    real.feature_scm()
  with pytest.raises(data.DataError, match="no ground-truth generator"):
    real.generator("test")
  with pytest.raises(data.DataError, match="is real data"):
    real.counterfactual({}, {"Male": 1})
  with pytest.raises(data.DataError, match="needs source="):
    data.load("celeba/simple")
  with pytest.raises(data.DataError, match="takes no setting 'seed'"):
    data.dataset("celeba/simple", source=str(tmp_path), seed=3)


@pytest.mark.parametrize("kwargs,match", [
    ({"seed": -1}, "seed"), ({"size": 0}, "size"), ({"split": "valid"},
                                                    "split"),
    ({"params": {"p_large": 2}}, "probability"),
])
def test_bad_load_arguments(cache_dir, kwargs, match):
  with pytest.raises(data.DataError, match=match):
    data.load("colored_mnist_bars/backdoor", **kwargs)


def test_cache_is_keyed_reused_and_atomic(cache_dir):
  name = "colored_mnist_bars/backdoor"
  a = data.load(name, "test", size=40, seed=3)
  assert isinstance(a["image"], np.memmap)  # read back from the cache
  root = cache_dir / "colored_mnist_bars" / "backdoor"
  (entry,) = root.iterdir()
  spec = json.loads((entry / "spec.json").read_text())["spec"]
  assert spec["seed"] == 3 and spec["size"] == 40
  assert list(a) == ["image", "D", "C", "B", "exogenous"]  # order kept
  assert spec["params"]["p_red_given_large"] == 0.8
  # Same key: the same directory, identical arrays; no temporary leftovers.
  b = data.load(name, "test", size=40, seed=3)
  np.testing.assert_array_equal(a["image"], b["image"])
  assert [p.name for p in root.iterdir()] == [entry.name]
  # In-memory generation gives the same data as the cache.
  c = data.load(name, "test", size=40, seed=3, cache=False)
  np.testing.assert_array_equal(a["exogenous"]["u_i"], c["exogenous"]["u_i"])
  # Any change of seed, size or parameter is a new entry.
  data.load(name, "test", size=40, seed=4)
  data.load(name, "test", size=41, seed=3)
  data.load(name, "test", size=40, seed=3, params={"p_large": 0.25})
  assert len(list(root.iterdir())) == 4
  assert not list(root.glob(".*"))


def test_failed_write_leaves_nothing(cache_dir):
  def build():
    return {"image": np.zeros((2, 2)), "bad": object()}

  with pytest.raises(ValueError):
    storage.cached("toy", "train", {"k": 1}, build)
  assert not list((cache_dir / "toy").iterdir())


def test_damaged_cache_is_rebuilt(cache_dir):
  calls = []

  def build():
    calls.append(1)
    return {"x": np.arange(5), "nested": {"y": np.ones(5)}}

  ds = storage.cached("toy", "train", {"k": 1}, build)
  np.testing.assert_array_equal(ds["nested"]["y"], np.ones(5))
  (entry,) = (cache_dir / "toy").iterdir()
  (entry / "x.npy").write_bytes(b"garbage")
  ds = storage.cached("toy", "train", {"k": 1}, build)
  np.testing.assert_array_equal(ds["x"], np.arange(5))
  assert len(calls) == 2


def toy(n=103):
  return {"x": np.arange(n), "nested": {"y": np.arange(n) * 2}}


def test_batches_shuffle_per_epoch_deterministically():
  ds = toy()
  it = data.batches(ds, 10, seed=1, epochs=2, process_index=0,
                    process_count=1)
  got = [b["x"] for b in it]
  assert len(got) == 20 and all(len(b) == 10 for b in got)
  epoch0, epoch1 = np.concatenate(got[:10]), np.concatenate(got[10:])
  assert len(set(epoch0)) == 100 and len(set(epoch1)) == 100
  assert not np.array_equal(epoch0, epoch1)
  again = [b["x"] for b in data.batches(ds, 10, seed=1, epochs=2,
                                        process_index=0, process_count=1)]
  np.testing.assert_array_equal(np.concatenate(got), np.concatenate(again))
  # Nested structure and row alignment are kept.
  for b in data.batches(ds, 10, seed=1, epochs=1, process_index=0,
                        process_count=1):
    np.testing.assert_array_equal(b["nested"]["y"], 2 * b["x"])
  # Resuming at step 13 gives the batches from step 13 on.
  resumed = [b["x"] for b in data.batches(ds, 10, seed=1, epochs=2,
                                          start_step=13, process_index=0,
                                          process_count=1)]
  np.testing.assert_array_equal(np.concatenate(resumed),
                                np.concatenate(got[13:]))


def test_batches_shard_disjointly_over_processes():
  ds = toy(64)
  shards = [list(data.batches(ds, 8, seed=0, epochs=1, process_index=i,
                              process_count=2)) for i in range(2)]
  single = list(data.batches(ds, 8, seed=0, epochs=1, process_index=0,
                             process_count=1))
  for step, whole in enumerate(single):
    a, b = shards[0][step]["x"], shards[1][step]["x"]
    assert len(a) == len(b) == 4
    np.testing.assert_array_equal(np.concatenate([a, b]), whole["x"])
  # Default process index / count come from jax (one process here).
  assert len(list(data.batches(ds, 8, epochs=1))) == 8


def test_batches_unshuffled_keeps_the_remainder():
  got = list(data.batches(toy(25), 10, shuffle=False, epochs=1,
                          drop_remainder=False, process_index=0,
                          process_count=1))
  np.testing.assert_array_equal(np.concatenate([b["x"] for b in got]),
                                np.arange(25))


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 3, "process_count": 2, "process_index": 0}, "multiple"),
    ({"batch_size": 200}, "fewer than one batch"),
    ({"batch_size": 4, "seed": -2}, "seed"),
    ({"batch_size": 4, "process_count": 2, "process_index": 2}, "outside"),
])
def test_batches_bad_arguments(kwargs, match):
  with pytest.raises(data.DataError, match=match):
    next(data.batches(toy(), **kwargs))


def test_batches_need_aligned_arrays():
  with pytest.raises(data.DataError, match="different lengths"):
    next(data.batches({"a": np.zeros(3), "b": np.zeros(4)}, 1))


def test_concurrent_writer_wins_and_unwritable_dir_is_one_line(cache_dir):
  def build():
    return {"x": np.arange(3)}

  spec = {"k": 2}
  path = cache_dir / "toy" / f"train-{storage.cache_key(spec)}"

  # Another process renames its complete copy into place while we build.
  def racing_build():
    storage.save({"x": np.arange(3) + 10}, path, spec)
    return build()

  ds = storage.cached("toy", "train", spec, racing_build)
  np.testing.assert_array_equal(ds["x"], np.arange(3) + 10)
  assert [p.name for p in (cache_dir / "toy").iterdir()] == [path.name]
  blocker = cache_dir / "file"
  blocker.write_text("not a directory")
  with pytest.raises(data.DataError, match="cannot write the data cache"):
    storage.cached("toy", "train", spec, build, directory=blocker)
