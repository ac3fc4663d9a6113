"""The one atomic writer: content, no leftovers, nothing half-written."""

import json
import os
import stat

import numpy as np
import pytest

from ctfjax import files


class Boom(Exception):
  pass


def test_writes_text_bytes_and_json_with_no_leftovers(tmp_path):
  out = tmp_path / "sub" / "dir"  # missing folders are created
  assert files.write_text(out / "a.md", "héllo\n") == out / "a.md"
  files.write_bytes(out / "b.bin", b"\x00\x01")
  files.write_json(out / "c.json", {"x": [1, 2]})
  assert (out / "a.md").read_bytes() == "héllo\n".encode("utf-8")
  assert (out / "b.bin").read_bytes() == b"\x00\x01"
  assert (out / "c.json").read_text() == json.dumps({"x": [1, 2]}, indent=1)
  assert sorted(p.name for p in out.iterdir()) == ["a.md", "b.bin", "c.json"]
  # An existing file is replaced whole.
  files.write_text(out / "a.md", "new")
  assert (out / "a.md").read_text() == "new"
  assert len(list(out.iterdir())) == 3


def test_temporary_keeps_the_suffix_and_the_umask_mode(tmp_path):
  seen = []

  def writer(tmp):
    seen.append(tmp)
    np.save(tmp, np.arange(3))  # np.save appends .npy unless it is there

  files.write_with(tmp_path / "x.npy", writer)
  (tmp,) = seen
  assert tmp.parent == tmp_path and tmp.name.startswith(".")
  assert tmp.suffix == ".npy"
  np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.arange(3))
  umask = os.umask(0)
  os.umask(umask)
  mode = stat.S_IMODE((tmp_path / "x.npy").stat().st_mode)
  assert mode == 0o666 & ~umask  # not mkstemp's 0600
  assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


@pytest.mark.parametrize("existing", [True, False])
def test_a_write_that_raises_midway_leaves_the_target_alone(tmp_path,
                                                            existing):
  target = tmp_path / "report.json"
  if existing:
    target.write_text("old")
  with pytest.raises(Boom):
    with files.atomic_path(target) as tmp:
      tmp.write_text("half")
      raise Boom
  if existing:
    assert target.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["report.json"] * existing
  # Unserialisable JSON fails before anything is created.
  with pytest.raises(TypeError):
    files.write_json(target, {"x": object()})
  assert len(list(tmp_path.iterdir())) == int(existing)


def test_directory_is_moved_whole_and_never_over_a_complete_one(tmp_path):
  target = tmp_path / "train-abc"
  with pytest.raises(Boom):
    with files.atomic_path(target, directory=True) as tmp:
      (tmp / "x.npy").write_bytes(b"half")
      raise Boom
  assert not list(tmp_path.iterdir())
  with files.atomic_path(target, directory=True) as tmp:
    assert tmp.is_dir() and not list(tmp.iterdir())
    (tmp / "x.npy").write_bytes(b"first")
  # A second writer loses the race: the first copy stays, its temporary goes.
  with pytest.raises(OSError):
    with files.atomic_path(target, directory=True) as tmp:
      (tmp / "x.npy").write_bytes(b"second")
  assert (target / "x.npy").read_bytes() == b"first"
  assert [p.name for p in tmp_path.iterdir()] == ["train-abc"]
