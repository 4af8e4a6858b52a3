"""Stage samples: export the real photos bundled inside scikit-image, with their captions.

Inputs:  the installed scikit-image package
Outputs: data/samples/ (PNG files + captions.jsonl), metrics/samples.json
Params:  samples
"""

from pathlib import Path

from safeforge.config import stage_params
from safeforge.metrics import StageAccounting
from safeforge.sources.skimage_samples import bundled_samples, export
from safeforge.stage import run

PARAMS = ("samples",)
OUT = Path("data/samples")


def main() -> None:
    params = stage_params(PARAMS)["samples"]
    acct = StageAccounting("samples")
    acct.rows_in = len(bundled_samples())
    acct.rows_out = len(export(OUT, min_images=params["min_images"]))
    acct.finish("metrics/samples.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
