"""What a wheel holds: the zoo cards, the shipped model and the model configs ship inside
the package, so ``pip install rsretrieve`` from a wheel has the whole zoo."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_installed_in_a_fresh_environment_lists_the_whole_zoo(tmp_path: Path) -> None:
    source = tmp_path / "src"  # build from a copy: the checkout gets no build/ or egg-info
    shutil.copytree(REPO / "rsretrieve", source / "rsretrieve", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("rsretrieve-*.whl"))
    venv.create(tmp_path / "fresh", with_pip=False)
    python = tmp_path / "fresh" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", site, str(wheel)],
                   check=True, capture_output=True)
    # rsretrieve comes from the wheel alone; its dependencies from this environment (whose
    # editable rsretrieve is a .pth hook, which PYTHONPATH entries do not run).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_path("purelib"), "RSRETRIEVE_ZOO": "", "RSRETRIEVE_HOME": str(tmp_path / "home")}
    code = ("import rsretrieve, rsretrieve.zoo as z; print(rsretrieve.__file__); print(','.join(sorted(z.load_zoo())))\n"
            "from rsretrieve.cli.app import app\n"
            "try: app(['models'])\n"
            "except SystemExit as e: assert e.code == 0, e.code")
    shown = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    where, names = shown.splitlines()[:2]
    assert where.startswith(site), where
    expected = sorted(p.stem for p in (REPO / "rsretrieve" / "cards").glob("*.yaml"))
    assert names.split(",") == expected and "closp-rn" in expected
    assert "closp-rn" in shown and "rsretrieve-default" in shown
