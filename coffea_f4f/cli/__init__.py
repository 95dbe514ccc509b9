"""The ``coffea-f4f`` command line.

Commands (``coffea-f4f COMMAND --help`` describes each):

- ``coffea-f4f demo [--out DIR] [--quick]`` runs the whole chain on built-in data (see
  :mod:`coffea_f4f.demo`): dijet sim and data samples are generated, the conditional morph
  sim -> data at each mjj is trained, held-out events are written as NanoAOD-schema ROOT files
  and morphed inside a coffea processor, and the metrics (classifier AUC before/after,
  Wasserstein distances, distance moved, transport ratio) are printed and written to
  ``DIR/metrics.json`` with plots and the saved model. ``--toy`` runs the same on two 2D toy
  shapes instead, without coffea.
- ``coffea-f4f train CONFIG`` trains a morph from ROOT (uproot) or parquet inputs described by
  a TOML (or YAML) file and saves the model directory (:mod:`~coffea_f4f.cli.train`).
- ``coffea-f4f apply MODEL INPUT OUTPUT`` writes a copy of a ROOT tree with morphed branches
  ``<branch>_morphed`` added, chunk by chunk (:mod:`~coffea_f4f.cli.apply`).
- ``coffea-f4f evaluate MODEL --source FILE:TREE --target FILE:TREE`` morphs the source, prints
  the metrics and writes ``metrics.json`` and plots (:mod:`~coffea_f4f.cli.evaluate`).

Inputs are written ``file.root:tree`` (the tree defaults to ``Events``), or ``file.parquet``
(:mod:`~coffea_f4f.cli.inputs`). Errors in arguments or inputs are reported as one line on
stderr with exit code 2 (no traceback; ``coffea-f4f --debug COMMAND ...`` shows it). The parser
is :mod:`~coffea_f4f.cli.parser`. Nothing here imports torch until a command trains or morphs.
"""

from .parser import main

__all__ = ["main"]
