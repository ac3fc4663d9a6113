r"""Edits a user's image with a trained model: factual and edits side by side.

    python -m launch.edit --workdir=runs/ancm_backdoor --image=in.png \
        --do="C=1" --out=out.png [--num_samples=4] [--labels="D=3,C=0,B=0"] \
        [--care=D]

The image must have the model's size and mode (32x32 RGB for Colored MNIST,
32x32 grayscale for MorphoMNIST). A continuous factor takes a real value:
--do="thickness=3.5".
Its features are read by the model's label reader unless --labels gives them.
Each of the --num_samples edits comes from its own feature-level abduction:
descendants of the intervened factor are not identified, so the edits form a
distribution. The output PNG is the factual image followed by the edits,
enlarged --scale times; the features of each are printed.

--care names the features to preserve (the care set W, docs/evaluation.md
"Care sets"): W's non-descendants of the intervention keep their values,
the other features are drawn afresh and may change. Empty (the default):
every feature; --care=none: the empty set; the intervened factor cannot be
in it.
"""


import numpy as np
from absl import flags
from PIL import Image, UnidentifiedImageError

from ctfjax.errors import UserError
from launch import cli
from launch.edit_inputs import model_dir
from launch.edit_inputs import parse_assignments
from launch.edit_inputs import typed

flags.DEFINE_string("workdir", None, "A trained run's folder.")
flags.DEFINE_string("model", "ancm_vae",
                    "Which model of a launch.run workdir edits.")
flags.DEFINE_string("image", None, "PNG (or any PIL-readable) input image.")
flags.DEFINE_string("do", None, "Intervention, e.g. 'C=1' or 'C=1,B=0'; a "
                    "continuous factor takes a real, 'thickness=3.5'.")
flags.DEFINE_string("labels", "", "The image's features, e.g. 'D=3,C=0,B=0'; "
                    "read from the image when empty.")
flags.DEFINE_string("care", "", "Care set: features to preserve, e.g. "
                    "'D,B'; 'none' for no feature; empty for all.")
flags.DEFINE_string("out", None, "Output PNG path.")
flags.DEFINE_integer("num_samples", 4, "Edits to draw (feature abductions).")
flags.DEFINE_integer("scale", 4, "Enlargement of the output (nearest).")
flags.DEFINE_integer("seed", 0, "Seed of the abduction draws.")
FLAGS = flags.FLAGS


def format_value(value) -> str:
  """A feature value as printed: integers plainly, reals to 3 decimals."""
  value = np.asarray(value).item()
  return f"{value:.3f}" if isinstance(value, float) else str(value)


def read_image(path: str, shape) -> np.ndarray:
  """The image as uint8 [H, W, C], checked against the model's shape."""
  h, w, c = shape
  mode = {1: "L", 3: "RGB"}[c]
  try:
    with Image.open(path) as img:
      img.load()
      got = img
  except FileNotFoundError:
    raise UserError(f"image {path} does not exist") from None
  except (UnidentifiedImageError, OSError) as e:
    raise UserError(f"image {path} cannot be read as an image ({e})") from None
  if got.size != (w, h):
    raise UserError(f"image {path} is {got.size[0]}x{got.size[1]}; this model "
                    f"edits {w}x{h} {mode} images")
  if got.mode != mode:
    raise UserError(f"image {path} has mode {got.mode}; this model edits "
                    f"{w}x{h} {mode} images")
  arr = np.asarray(got, dtype=np.uint8)
  return arr.reshape(h, w, c)


def write_strip(images: np.ndarray, path: str, scale: int):
  """[N, H, W, C] uint8 side by side with a 1-pixel gap, atomically."""
  n, h, w, c = images.shape
  strip = np.full((h, n * (w + 1) - 1, c), 128, np.uint8)
  for i, img in enumerate(images):
    strip[:, i * (w + 1):i * (w + 1) + w] = img
  strip = np.repeat(np.repeat(strip, scale, 0), scale, 1)
  out = Image.fromarray(strip[..., 0] if c == 1 else strip)
  from ctfjax import files  # pylint: disable=import-outside-toplevel
  files.write_with(path, lambda tmp: out.save(tmp, format="PNG"))


def main():
  # The library loads JAX; imported here so that --help answers at once.
  # pylint: disable=import-outside-toplevel
  import jax
  from ctfjax import files
  from ctfjax.ancm import fit
  from ctfjax.ancm import model as ancm_model
  from ctfjax.metrics import consistency
  # pylint: enable=import-outside-toplevel
  cli.require("image")
  out = cli.require("out")
  files.writable_file(out, "--out")
  if FLAGS.num_samples < 1 or FLAGS.scale < 1:
    cli.fail("--num_samples and --scale must be positive")
  do = parse_assignments(cli.require("do"), "--do")
  run = model_dir(cli.require("workdir"), FLAGS.model,
                  FLAGS["model"].present)
  # Check the user's input against the run's config before the (slow)
  # restore and compilation of the model.
  config = fit.read_config(run)
  dataset = fit.dataset_of(config)
  _, domains = fit.features(dataset)
  image = read_image(FLAGS.image, dataset.image_shape)
  do = typed(do, domains, "--do")
  care = consistency.parse_care(FLAGS.care, "--care")
  if care is not None:
    ancm_model.check_care(care, list(domains), do)
  labels = None
  if FLAGS.labels:
    given = parse_assignments(FLAGS.labels, "--labels")
    if set(given) != set(domains):
      raise UserError(f"--labels must give exactly {', '.join(domains)}")
    labels = {k: np.array([v]) for k, v in
              typed(given, domains, "--labels").items()}
  _, model, params = fit.load(run)
  result = model.edit(params, image[None], do, jax.random.key(FLAGS.seed),
                      num_samples=FLAGS.num_samples, labels=labels,
                      care=care)
  factual = labels or model.read_labels(params, image[None])
  fmt = lambda v, i: ", ".join(
      f"{k}={format_value(np.asarray(v[k]).reshape(-1)[i])}"
      for k in model.order)
  print(f"factual: {fmt(factual, 0)}" +
        (" (given)" if labels else " (read from the image)"))
  if care is not None:
    print(f"care set: {', '.join(care) or 'none'} (the other features may "
          "change)")
  for s in range(FLAGS.num_samples):
    print(f"edit {s + 1}: {fmt(result, s)}")
  write_strip(np.concatenate([image[None], np.asarray(result["image"][0])]),
              out, FLAGS.scale)
  print(f"wrote {out}")


if __name__ == "__main__":
  cli.run(main)
