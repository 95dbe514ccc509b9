"""The reweighting side of ``time_to_quality.py``: hep_ml's ``GBReweighter`` (no coffea-f4f).

Run in the reference environment: ``python _reweighter_reference.py IN.npz OUT.npz TREES``.
``IN.npz`` holds ``source`` and ``target`` (training events, features and condition as
columns) and ``apply`` (held-out source events). Fits the reweighter source -> target on one
thread and writes the weights of ``apply`` to ``OUT.npz``; prints one JSON line with the
fit + predict CPU seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from hep_ml.reweight import GBReweighter


def main() -> None:
    src, out, trees = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = np.load(src)
    t0 = time.process_time()
    rw = GBReweighter(
        n_estimators=trees,
        learning_rate=0.1,
        max_depth=3,
        min_samples_leaf=200,
        gb_args={"subsample": 0.5},
    )
    rw.fit(data["source"], data["target"])
    weights = rw.predict_weights(data["apply"])
    seconds = time.process_time() - t0
    np.savez(out, weights=weights)
    print(json.dumps({"cpu_seconds": seconds}))


if __name__ == "__main__":
    main()
