"""Run a benchmark's measurement against an earlier revision of pcm-hil, in one run with the
current one: the before/after figures of a speed change side by side on the same machine, in
the same minute.

``measure_at(rev, module, function, *args)`` exports ``rev`` of this repository (``git
archive``) into a temporary folder, lays it out as the installed package (``hil/`` as
``pcm_hil``, ``drivers/`` as ``pcm_hil.drivers``, …, exactly as pyproject.toml maps them),
and calls ``function(*args)`` of the benchmark module ``module`` (from this folder, the
current one) in a fresh Python process whose ``import pcm_hil`` finds that tree first. The
function returns something JSON can carry; so does ``measure_at``.

The measurement code is the current benchmark's; only the library under it is the old one —
so it must use only the API the old revision has.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

#: The revision before issue #16's emulator speed work (its first step, 1f97bba, included:
#: the issue's figures were taken before it).
BEFORE = "201cf2c"


@cache
def tree_at(rev: str) -> Path:
    """A folder holding ``pcm_hil`` as of ``rev`` (exported once per process)."""
    folder = Path(tempfile.mkdtemp(prefix=f"pcm-hil-{rev}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = folder / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev], stdout=out, check=True)
    source = folder / "src"
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.10.12 / 3.11.4: refuse odd members
            tar.extractall(source, filter="data")
        else:  # our own repository's archive
            tar.extractall(source)
    site = folder / "site"
    site.mkdir()
    package = site / "pcm_hil"
    (source / "hil").rename(package)
    for name in ("drivers", "emulator", "protocols"):
        (source / name).rename(package / name)
    # the entry points (the embedded emulator's transport, the pytest plugin) are the
    # installed distribution's: they name modules, which resolve to this tree first
    return site


def measure_at(rev: str, module: str, function: str, *args: object) -> object:
    """``module.function(*args)`` with pcm_hil as of ``rev``, in a fresh process."""
    site = tree_at(rev)
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(site)!r}, {str(HERE)!r}]\n"
        "import pcm_hil\n"
        f"assert pcm_hil.__file__.startswith({str(site)!r}), pcm_hil.__file__\n"
        f"import {module} as bench\n"
        f"print('\\n' + json.dumps(bench.{function}(*json.loads(sys.argv[1]))))\n"
    )
    # PYTHONPATH too: processes it starts (an emulator served over TCP) run the same tree
    path = os.pathsep.join(filter(None, [str(site), str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(site),
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring at {rev} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def revision(rev: str = "HEAD") -> str:
    """The short hash of ``rev``."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
