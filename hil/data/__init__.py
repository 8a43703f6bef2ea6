"""Recorded runs as data: ``load_run`` gives a run as an ``xarray.Dataset`` (named dimensions,
coordinates, units), ``run_tables`` every table of it, ``export_run`` writes them as NetCDF,
Parquet or CSV (``pcm-hil runs export``):

    import pcm_hil

    drift = pcm_hil.load_run(12)                 # the drift run's reads and per-device fits
    drift.nu.groupby("target_uS").mean()         # ν per level
    table = drift.to_dataframe()                 # tidy: one row per (time, device)
    programming = pcm_hil.load_run(12, "program")  # its programming, one row per device
"""

from pcm_hil.data.export import FORMATS, export_run
from pcm_hil.data.load import load_run, run_tables

__all__ = ["FORMATS", "export_run", "load_run", "run_tables"]
