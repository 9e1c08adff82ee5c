"""``make demo`` as the README runs it: other ports carried through, and a clean Ctrl-C.

The test starts the real target in a process group of its own, on free ports and
a database in a temporary directory, plays the README's "try the whole loop"
command from a second "terminal", then presses Ctrl-C (SIGINT to the whole group,
as a terminal does) and checks that nothing of the demo is left. It takes some
seconds (migrations, two servers, one emulated call), and runs wherever ``make``
is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "example_project" / "manage.py"
MAKE = shutil.which("make")
TIMEOUT = 60.0


def development_environment_ready() -> bool:
    """Whether ``.venv`` is set up and current, so that make installs nothing.

    Otherwise the target would first install from the network, which no test does.
    """
    if MAKE is None:
        return False
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    question = subprocess.run(
        [MAKE, "-q", ".venv/.installed"], cwd=ROOT, env=env, capture_output=True, check=False
    )
    return question.returncode == 0


pytestmark = [
    pytest.mark.skipif(MAKE is None, reason="make demo needs make"),
    pytest.mark.skipif(
        not development_environment_ready(), reason="set up .venv first: make .venv/.installed"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, probe: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (signal 0 only asks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Output:
    """A process's output, read in a thread so that a full pipe never blocks it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The environment of a reader's terminals: the demo's own, no test settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))}
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    # Where the demo writes its ports (example_project/.env.demo unless told), so that
    # the test never touches a demo the developer runs in this working tree.
    env["DEMO_ENV_FILE"] = str(tmp_path / ".env.demo")
    return env


class Demo:
    """``make demo`` on free ports, started as a terminal starts it: a process group."""

    def __init__(self, environment: dict[str, str]) -> None:
        assert MAKE is not None
        self.site_port, self.emulator_port = free_port(), free_port()
        self.site = f"http://127.0.0.1:{self.site_port}"
        self.emulator = f"http://127.0.0.1:{self.emulator_port}"
        self.process = subprocess.Popen(
            [MAKE, "demo", f"PORT={self.site_port}", f"EMULATOR_PORT={self.emulator_port}"],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self.output = Output(self.process.stdout)

    def wait_until_up(self) -> None:
        wait_for(
            "both servers", lambda: listening(self.site_port) and listening(self.emulator_port)
        )

    def ctrl_c(self) -> int:
        """Press Ctrl-C: the terminal sends SIGINT to every process of the group."""
        os.killpg(self.process.pid, signal.SIGINT)
        # Generous: under coverage every server saves its data on the way out.
        status = self.process.wait(timeout=TIMEOUT)
        self.output.thread.join(timeout=5)
        return status

    def kill(self) -> None:
        """Leave nothing running, whatever happened."""
        if group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.output.thread.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def demo(environment: dict[str, str]) -> Iterator[Demo]:
    started = Demo(environment)
    try:
        yield started
    finally:
        started.kill()


def test_make_demo_on_other_ports_carries_them_to_the_links_and_the_commands(
    demo: Demo, environment: dict[str, str]
) -> None:
    demo.wait_until_up()
    with requests.Session() as browser:
        browser.trust_env = False
        home = wait_for("the home page", lambda: browser.get(f"{demo.site}/", timeout=10))
        assert home.status_code == 200, home.text
    # The home page links the emulator the demo started, not the default port.
    assert f'href="{demo.emulator}/"' in home.text
    assert "8765" not in home.text
    # The links make demo prints.
    assert f"Site:      {demo.site}/" in demo.output.text
    assert f"Emulator:  {demo.emulator}/" in demo.output.text

    # README: "Try the whole loop from another terminal while the demo runs", as written.
    assert Path(environment["DEMO_ENV_FILE"]).is_file()
    call = subprocess.run(
        [sys.executable, str(MANAGE), "voicepassword_call", "+7 999 000-00-03", "--wait", "15"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    # The call went to the demo's emulator, and its callback came back to the demo's
    # site: the command saw the final state that only the callback carries.
    assert call.returncode == 0, call.stdout + call.stderr
    assert "no_answer" in call.stdout, call.stdout + call.stderr


def test_ctrl_c_stops_both_servers_and_exits_as_interrupted(
    demo: Demo, environment: dict[str, str]
) -> None:
    demo.wait_until_up()
    status = demo.ctrl_c()
    output = demo.output.text
    assert "Segmentation fault" not in output
    # make dies of the interrupt (a shell shows 130 = 128 + SIGINT).
    assert status in (-signal.SIGINT, 128 + signal.SIGINT), output
    # Nothing of the demo is left: no process of its group, no server, no ports file.
    # (An orphan would be reaped by init a moment after make is gone: give it that.)
    deadline = time.monotonic() + 2
    while group_alive(demo.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(demo.process.pid), output
    assert not listening(demo.site_port), output
    assert not listening(demo.emulator_port), output
    assert not Path(environment["DEMO_ENV_FILE"]).exists()
