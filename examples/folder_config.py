"""Your own images: the quick start's three models on a folder with a CSV.

    python -m launch.run --config=examples/folder_config.py \
        --config.data.source=/path/to/folder --workdir=runs/mine

The folder holds attributes.csv (a `file` column, one column per attribute,
optionally `split`) and the images it lists (docs/datasets.md#folder).
"""

from configs import quickstart


def get_config(arg=None):
  config = quickstart.get_config(arg)
  config.data.name = "folder"
  config.data.source = "data/my_images"  # Holds attributes.csv.
  config.data.attributes = {"digit": "categorical",  # Values from the CSV;
                            "colour": ["green", "red"],  # or listed;
                            "bar": "categorical"}  # or "continuous".
  config.data.graph = "digit <-> colour; digit -> bar; colour -> bar"
  config.data.image_size = 32  # Centre-cropped and resized to 32 x 32.
  return config
