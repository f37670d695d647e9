"""Packaging (issue 14 item 3): the built wheel carries what a user needs and works from a
fresh venv; ``roommon init-config`` writes a starter that passes check-config; the example
config ships in the package and its commented serial feed is valid once uncommented."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from roommon.cli import main
from roommon.cli.init_config import EXAMPLE, starter_text, template_text
from roommon.config import load_config
from roommon.runtime.preflight import preflight_problems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "config" / "example-room.toml"
#: What the wheel must carry besides the code (docs: README "Running it", docs/operations.md).
PACKAGE_DATA = (
    "roommon/wire/schemas/alarm_event.schema.json",
    "roommon/wire/schemas/feed_waveform.schema.json",
    "roommon/examples/example-room.toml",
    "roommon/examples/starter.toml",
    "roommon/web/static/room.html",
    "roommon/py.typed",
)


def uncommented(text: str, first: str) -> str:
    """``text`` with the commented block that starts at the line ``first`` uncommented
    (up to the first line that is not a comment)."""
    lines = text.splitlines()
    start = lines.index(first)
    end = start
    while end < len(lines) and lines[end].startswith("#"):
        lines[end] = lines[end].removeprefix("#").removeprefix(" ")
        end += 1
    return "\n".join(lines) + "\n"


def test_init_config_writes_a_starter_that_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etc" / "roommon.toml"
    assert main(["init-config", str(path)]) == 0
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok: site site1, 1 room(s), 3 feed(s), 3 check(s)" in out
    text = path.read_text()
    assert f"roommon check-config {path}" in text  # the header names the file written
    assert text.count("\n#") > 20  # commented
    assert load_config(path).daemon.state_dir == tmp_path / "etc" / "var"  # beside the file

    assert main(["init-config", str(path)]) == 2  # never overwritten by accident
    assert "exists" in capsys.readouterr().err
    assert main(["init-config", "--force", "--state-dir", "/var/lib/roommon", str(path)]) == 0
    assert load_config(path).daemon.state_dir == Path("/var/lib/roommon")


def test_the_starters_commented_serial_feed_is_valid_once_uncommented(tmp_path: Path) -> None:
    path = tmp_path / "room.toml"
    text = starter_text(state_dir=str(tmp_path))
    path.write_text(uncommented(text, "# [rooms.proc1.feeds.pleth]"))
    config = load_config(path)
    serial = config.rooms["proc1"].feeds["pleth"].serial
    assert serial is not None
    assert serial.protocol == "nonin_fmt2"
    assert preflight_problems(config) == []


def test_the_examples_commented_serial_feed_is_valid_once_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOMMON_MQTT_USERNAME", "roommon")
    monkeypatch.setenv("ROOMMON_MQTT_PASSWORD", "secret")
    text = EXAMPLE_CONFIG.read_text()
    path = tmp_path / "room.toml"
    path.write_text(uncommented(text, "# [rooms.proc1.feeds.pleth_serial]"))
    config = load_config(path)
    feed = config.rooms["proc1"].feeds["pleth_serial"]
    assert (feed.transport, feed.fs) == ("serial", 75.0)
    assert feed.serial is not None
    assert (feed.serial.protocol, feed.serial.baudrate) == ("nonin_fmt2", 9600)
    assert preflight_problems(config) == []


def test_the_packaged_example_is_the_repositorys() -> None:
    """config/example-room.toml is the one people edit; roommon/examples/example-room.toml
    is a symbolic link to it, which the wheel build turns into a copy."""
    assert template_text(EXAMPLE) == EXAMPLE_CONFIG.read_text()
    assert (ROOT / "roommon" / "examples" / EXAMPLE).is_symlink()


def _source_copy(dest: Path) -> Path:
    """The project's files without the venv, caches and build output (a build in place
    would leave build/ and egg-info behind in the work tree)."""
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "var"
    )
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("roommon", "simulators"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    """Build the wheel, install it (no dependencies from the network: the dependencies are
    the ones this venv already has, reached through a .pth line) into a fresh venv, and run
    the installed console script from outside the source tree."""
    src = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("roommon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in PACKAGE_DATA if n not in names]
    assert not missing, missing
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Dependencies (numpy, scipy, aiohttp...) from this venv, after the fresh venv's own
    # site-packages on sys.path: roommon itself must come from the installed wheel.
    (purelib / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(py)]
    subprocess.run(
        [*pip, "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def roommon(*args: str) -> str:
        done = subprocess.run(
            ["roommon", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    where = subprocess.run(
        [str(py), "-c", "import roommon, roommon.wire.registry as r; print(roommon.__file__); "
         "print(len(list(r.SCHEMA_DIR.glob('*.schema.json'))))"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()
    assert where[0].startswith(str(purelib))  # the wheel's roommon, not the source tree's
    assert int(where[1]) >= 12  # the JSON Schemas are installed
    assert roommon("--version").startswith("roommon ")
    roommon("init-config", "room.toml")
    assert "ok: site site1" in roommon("check-config", "room.toml")
    roommon("init-config", "--example", "example.toml")
    assert (work / "example.toml").read_text() == EXAMPLE_CONFIG.read_text()
    out = roommon("demo", "--minutes", "1", "--speed", "0")
    assert "procedure" in out.lower()  # the demo's room went through its phases
