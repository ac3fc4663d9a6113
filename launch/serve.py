r"""Serves a trained run as a web page for editing images by intervention.

    python -m launch.serve --workdir=runs/quickstart [--port=8080] \
        [--host=127.0.0.1] [--model=ancm_vae]

Open the printed address in a browser: choose a test image (or upload a
PNG/JPEG), set do() on any features, and see the factual image, the
distribution of edits, the features read from each, the true
counterfactual where the dataset has a generator, and the exact bounds of
each feature's change. The same is a JSON API (POST /api/edit, GET
/api/model; docs/editor.md). It listens on 127.0.0.1 unless --host says
otherwise; Ctrl-C stops it.
"""

from absl import flags

from launch import cli

flags.DEFINE_string("workdir", None, "A trained run's folder (launch.run or "
                    "launch.train).")
flags.DEFINE_string("model", None, "The model edits default to (a launch.run "
                    "folder; default its ANCM).")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
flags.DEFINE_integer("port", 8080, "Port (0: any free port).")
flags.DEFINE_integer("queue", 4, "Edit requests admitted at once; more are "
                     "refused with 503.")
flags.DEFINE_bool("quiet", False, "No log line per request.")
FLAGS = flags.FLAGS


def main():
  if not 0 <= FLAGS.port <= 65535:
    cli.fail(f"--port={FLAGS.port} is outside 0..65535")
  if FLAGS.queue < 1:
    cli.fail("--queue must be positive")
  # The library loads JAX; imported here so that --help answers at once.
  # pylint: disable=import-outside-toplevel
  from ctfjax.editor import server
  from ctfjax.editor.session import Session
  # pylint: enable=import-outside-toplevel
  session = Session.open(cli.require("workdir"), FLAGS.model)
  print(f"restoring {session.default} and its readers...", flush=True)
  session.warm()
  server.serve(session, FLAGS.host, FLAGS.port, queue=FLAGS.queue,
               quiet=FLAGS.quiet)


if __name__ == "__main__":
  cli.run(main)
