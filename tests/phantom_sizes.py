"""The sizes the tests' phantom runs train at, declared once: 64-pixel slices, 128-pixel tau crops and 48-pixel lung
crops. The defaults' 160-pixel lung crops of 64-pixel phantoms would be most of such a run's time."""
from __future__ import annotations

SIZES = {"image_size": 64, "hires_size": 128, "lesion_size": 48}  # core.config.PipelineConfig fields
# the same on a `train` command line (its hires size follows the image size: 2 x 64)
ARGS = [arg for field in ("image_size", "lesion_size") for arg in (f"--{field.replace('_', '-')}", str(SIZES[field]))]
