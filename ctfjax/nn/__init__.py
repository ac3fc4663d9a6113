"""Flax nnx building blocks (MLPs, convolutional encoders and decoders, ...)."""

from ctfjax.nn.mlp import MLP
