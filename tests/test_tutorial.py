"""The tutorial works: its code, run as written on a fresh project, ends in a phone login.

Each code block of ``docs/tutorial.md`` (and of its Russian twin) is preceded by
an HTML comment that says what a reader does with it:

- ``<!-- tutorial: setup -->``: make the environment this test already runs in
  (a virtual environment with the package installed); checked, not run;
- ``<!-- tutorial: run -->``: commands typed in the project's terminal, run one
  by one; the output lines the page shows must appear in the real output
  (``...`` stands for lines left out);
- ``<!-- tutorial: serve emulator -->``, ``<!-- tutorial: serve site -->``: a
  server the reader leaves running in a terminal; started on a free port;
- ``<!-- tutorial: append PATH -->``, ``<!-- tutorial: write PATH -->``: Python
  added to the end of a file of the project, or replacing it;
- ``<!-- tutorial: create PATH -->``: a new file of the project (a template);
- ``<!-- tutorial: browser -->`` (no code block): the steps the reader takes in a
  browser, done here with ``requests``: the pages in either language (by the
  browser's ``Accept-Language``), the phone form, the code read from the
  emulator's phone page, the code form, and the logged-in home page that greets
  with the number;
- ``<!-- tutorial: browser verify -->`` (no code block): the same browser adds a
  second number from the home page's link, comes back to the "verified" message
  and a greeting that still names the number it logged in with, and logs out
  with the home page's POST form.

Everything runs in subprocesses with this interpreter, as the reader's ``python``
would; only the ports differ from the page's, through the environment variables
that the tutorial's settings read.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext
from packaging.version import Version

from django_voicepassword.phone import mask

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["tutorial.md", "ru/tutorial.md"]

# A marker, then (unless it is the browser's) the fenced block it describes.
STEP = re.compile(
    r"<!-- tutorial: (?P<action>[a-z]+)(?: (?P<arg>[^ ]+))? -->\n"
    r"(?:\n*```(?P<lang>[a-z+]+)\n(?P<body>.*?)\n```)?",
    re.DOTALL,
)
FENCE = re.compile(r"^```[a-z+]+$", re.MULTILINE)
# The repository, as pyproject.toml's project URLs name it, and the package.
PROJECT = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REPOSITORY = PROJECT["urls"]["Source"]
PACKAGE = PROJECT["name"]
TEST_NUMBER = re.compile(r"`(\+7 999 000-00-\d\d)`")
TIMEOUT = 60.0
# The greeting of the tutorial's home page, in the language of each tutorial.
GREETING = {
    "tutorial.md": "Hello! You logged in by phone: {}.",
    "ru/tutorial.md": "Здравствуйте! Вы вошли по номеру {}.",
}
LANGUAGE = {"tutorial.md": "en", "ru/tutorial.md": "ru"}


def translated(language: str, message: str) -> str:
    """The package's ``message`` in ``language``, as a page shows it (escaped)."""
    with translation.override(language):
        return escape(gettext(message))


@dataclass
class Step:
    action: str
    arg: str | None
    lang: str | None
    body: str
    # The page's text from this step to the next one (the browser's instructions).
    text: str


def steps(page: str) -> list[Step]:
    source = (DOCS / page).read_text(encoding="utf-8")
    matches = list(STEP.finditer(source))
    found = []
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following is not None else len(source)
        found.append(
            Step(
                action=match["action"],
                arg=match["arg"],
                lang=match["lang"],
                body=match["body"] or "",
                text=source[match.end() : end],
            )
        )
    return found


def commands(body: str) -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of a console block, each with the output lines shown."""
    found: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        else:
            assert found, f"output before any command: {line!r}"
            found[-1][1].append(line)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, probe: Any, timeout: float = TIMEOUT) -> Any:
    """Call ``probe`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Forms(HTMLParser):
    """The forms of a page: their fields' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({})
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1][values["name"]] = values.get("value", "")

    @classmethod
    def of(cls, html: str) -> list[dict[str, str]]:
        parser = cls()
        parser.feed(html)
        return parser.forms


def form_with(html: str, name: str) -> dict[str, str]:
    """The fields of the page's form that has a field ``name``."""
    return next(form for form in Forms.of(html) if name in form)


@dataclass
class Reader:
    """Someone following the tutorial: a terminal's directory and environment, servers."""

    root: Path
    cwd: Path
    env: dict[str, str]
    site_port: int
    emulator_url: str = ""
    servers: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)
    # The page followed: the browser asks for its language and expects its greeting.
    page: str = "tutorial.md"
    # The browser of the browser steps: the second goes on in the first's session.
    browser: requests.Session | None = None
    login_number: str = ""

    @property
    def site(self) -> str:
        return f"http://127.0.0.1:{self.site_port}"

    def greeting(self, number: str) -> str:
        return GREETING[self.page].format(mask(number))

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        if words[0] == "python":
            return [sys.executable, *words[1:]]
        if words[0] == "django-admin":
            return [sys.executable, "-m", "django", *words[1:]]
        raise AssertionError(f"the tutorial runs {words[0]!r}, which this test cannot")

    def run(self, command: str, shown: list[str]) -> None:
        words = shlex.split(command)
        if words[0] == "cd":
            self.cwd = self.cwd / words[1]
            return
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.env[name] = value
            return
        if words[1:3] == ["manage.py", "runserver"]:
            self.serve_site(command, shown)
            return
        result = subprocess.run(
            self.argv(command),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        output = (result.stdout + result.stderr).splitlines()
        for line in shown:
            if line != "...":
                assert line in output, f"{command}: {line!r} not in {output}"

    def start(self, argv: list[str], name: str) -> Path:
        log = self.root / f"{name}.log"
        out = log.open("wb")
        process = subprocess.Popen(
            argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        self.servers.append((process, out))
        return log

    def serve_emulator(self, command: str, shown: list[str]) -> None:
        log = self.start([*self.argv(command), "--port", "0"], "emulator")
        found = wait_for(
            f"the emulator (its output: {log})",
            lambda: re.search(r"phone page (http://127\.0\.0\.1:(\d+))/", log.read_text()),
        )
        self.emulator_url = found[1]
        # The site reaches it where the tutorial's settings look: the environment.
        self.env["VOICEPASSWORD_API_URL"] = f"{self.emulator_url}/api/voice-password/"
        output = log.read_text().splitlines()
        for line in shown:
            assert line.replace(":8765/", f":{found[2]}/") in output, (line, output)

    def serve_site(self, command: str, shown: list[str]) -> None:
        self.stop("site")
        log = self.start(
            [*self.argv(command), f"127.0.0.1:{self.site_port}", "--noreload"], "site"
        )

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.site_port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(f"the site (its output: {log})", up)
        output = log.read_text().splitlines()
        for line in shown:
            assert line.replace(":8000/", f":{self.site_port}/") in output, (line, output)

    def stop(self, name: str) -> None:
        for process, out in list(self.servers):
            if Path(out.name).stem == name:
                process.terminate()
                process.wait(timeout=30)
                out.close()
                self.servers.remove((process, out))

    def stop_all(self) -> None:
        if self.browser is not None:
            self.browser.close()
        for process, out in self.servers:
            process.kill()
            process.wait(timeout=30)
            out.close()
        self.servers.clear()

    def code_on_phone(self, number: str) -> str:
        """The code the emulator's phone page shows for the latest call to ``number``."""
        assert self.browser is not None

        def shown_code() -> str | None:
            assert self.browser is not None
            phone = self.browser.get(f"{self.emulator_url}/?number={number}", timeout=30).text
            caller = re.search(r'<span class="code">(.*?)</span>', phone)
            return caller[1] if caller else None

        caller = wait_for("the call on the phone page", shown_code)
        code = re.fullmatch(r"\d+<mark>(\d{4})</mark>", caller)
        assert code, caller
        return code[1]

    def check_languages(self) -> None:
        """The pages answer each browser in its language (``LocaleMiddleware``)."""
        for language in ("ru", "en"):
            page = requests.get(
                f"{self.site}/voicepassword/login/",
                headers={"Accept-Language": f"{language},de;q=0.5"},
                timeout=30,
                proxies={"http": "", "https": ""},
            )
            assert page.status_code == 200
            title = translated(language, "Log in by phone")
            assert title in page.text, f"Accept-Language {language}: no {title!r} on the page"

    def log_in(self, typed: str) -> None:
        """The browser steps: the phone form, the code from the phone, the code form."""
        self.check_languages()
        number = re.sub(r"\D", "", typed)
        self.browser = browser = requests.Session()
        browser.trust_env = False  # loopback: no proxy, whatever the environment says
        browser.headers["Accept-Language"] = LANGUAGE[self.page]
        page = browser.get(self.site + "/", timeout=30)
        assert page.status_code == 200
        assert urlsplit(page.url).path == "/voicepassword/login/", page.url
        phone_form = form_with(page.text, "number")
        page = browser.post(page.url, data={**phone_form, "number": typed}, timeout=30)
        assert page.status_code == 200, page.text
        assert re.fullmatch(r"/voicepassword/login/[0-9a-f-]{36}/", urlsplit(page.url).path)
        code = self.code_on_phone(number)
        page = browser.post(
            page.url, data={**form_with(page.text, "code"), "code": code}, timeout=30
        )
        assert page.status_code == 200, page.text
        assert page.url == urljoin(self.site, "/"), page.url
        assert self.greeting(number) in page.text, page.text  # the number, masked
        assert "sessionid" in browser.cookies
        self.login_number = number

        # Step 9 reads how the call ended: its callback must have arrived.
        def delivered() -> bool:
            state = browser.get(f"{self.emulator_url}/_emulator/log", timeout=30).json()
            return any(d["status"] == 200 for d in state["deliveries"])

        wait_for("the callback", delivered)

    def verify_and_log_out(self, typed: str) -> None:
        """The second browser steps: add a number from the home page, then log out."""
        browser = self.browser
        assert browser is not None, "the login steps come first"
        assert self.login_number
        number = re.sub(r"\D", "", typed)
        home = browser.get(self.site + "/", timeout=30)
        link = re.search(r'<a href="([^"]+)"', home.text)
        assert link, f"no link on the home page: {home.text}"
        page = browser.get(urljoin(home.url, link[1]), timeout=30)
        assert urlsplit(page.url).path == "/voicepassword/verify/", page.url
        page = browser.post(
            page.url, data={**form_with(page.text, "number"), "number": typed}, timeout=30
        )
        assert re.fullmatch(r"/voicepassword/verify/[0-9a-f-]{36}/", urlsplit(page.url).path)
        code = self.code_on_phone(number)
        page = browser.post(
            page.url, data={**form_with(page.text, "code"), "code": code}, timeout=30
        )
        assert page.url == urljoin(self.site, "/"), page.url
        # The message the verification left, shown once, in the browser's language.
        verified = translated(LANGUAGE[self.page], "Your phone number %(number)s is verified.")
        assert verified % {"number": mask(number)} in page.text, page.text
        # The greeting names the number of the login, not the newest one.
        assert self.greeting(self.login_number) in page.text, page.text
        assert self.greeting(number) not in page.text, page.text

        logout = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert logout, f"no POST form on the home page: {page.text}"
        action = urljoin(page.url, logout[1])
        assert browser.get(action, timeout=30).status_code == 405  # Django 5+: POST only
        page = browser.post(action, data=form_with(page.text, "csrfmiddlewaretoken"), timeout=30)
        assert page.status_code == 200, page.text
        assert urlsplit(page.url).path == "/voicepassword/login/", page.url
        assert urlsplit(browser.get(self.site + "/", timeout=30).url).path == (
            "/voicepassword/login/"
        )

    def follow(self, page: str) -> None:
        self.page = page
        for step in steps(page):
            if step.action == "setup":
                self.check_setup(step.body)
            elif step.action == "run":
                for command, shown in commands(step.body):
                    self.run(command, shown)
            elif step.action == "serve":
                ((command, shown),) = commands(step.body)
                if step.arg == "emulator":
                    self.serve_emulator(command, shown)
                else:
                    assert step.arg == "site", step.arg
                    self.serve_site(command, shown)
            elif step.action in ("append", "write"):
                assert step.arg is not None
                assert step.lang == "python"
                target = self.cwd / step.arg
                assert target.is_file(), f"{step.arg} is not a file of the project"
                text = step.body + "\n"
                if step.action == "append":
                    text = target.read_text(encoding="utf-8") + "\n" + text
                target.write_text(text, encoding="utf-8")
            elif step.action == "create":
                assert step.arg is not None
                target = self.cwd / step.arg
                assert not target.exists(), f"{step.arg} is already a file of the project"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step.body + "\n", encoding="utf-8")
            elif step.action == "browser":
                typed = TEST_NUMBER.search(step.text)
                assert typed, "the browser steps name no test number to type"
                if step.arg == "verify":
                    self.verify_and_log_out(typed[1])
                else:
                    assert step.arg is None, step.arg
                    self.log_in(typed[1])
            else:
                raise AssertionError(f"unknown tutorial step {step.action!r}")

    @staticmethod
    def check_setup(body: str) -> None:
        # This test runs in such an environment already: the package is installed.
        # Until the first release the page installs it from a clone of the repository
        # (tests/test_dist.py builds and tries the wheel), afterwards from the index.
        assert version("django-voicepassword")
        clone = None
        for command, _ in commands(body):
            if command.startswith("git clone "):
                url = shlex.split(command)[2]
                assert url == f"{REPOSITORY}.git", command
                clone = url.removesuffix(".git").rsplit("/", 1)[1]
            elif command.startswith("pip install "):
                assert shlex.split(command)[2:] == [f"./{clone}" if clone else PACKAGE], command
            else:
                assert command.startswith(("python -m venv ", "source ")), command
        # An unreleased version is on no package index: `pip install django-voicepassword`
        # would fail (or fetch someone else's package), so the page must use the clone.
        if Version(version(PACKAGE)).is_devrelease:
            assert clone, "the package is not released yet: install it from a clone"


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    site_port = free_port()
    env["VOICEPASSWORD_CALLBACK_BASE_URL"] = f"http://127.0.0.1:{site_port}"
    person = Reader(root=tmp_path, cwd=tmp_path, env=env, site_port=site_port)
    try:
        yield person
    finally:
        person.stop_all()


@pytest.mark.parametrize("page", PAGES)
def test_every_code_block_of_the_tutorial_says_what_to_do_with_it(page):
    source = (DOCS / page).read_text(encoding="utf-8")
    marked = [step for step in steps(page) if step.action != "browser"]
    assert len(FENCE.findall(source)) == len(marked)
    browser = [step.arg for step in steps(page) if step.action == "browser"]
    assert browser == [None, "verify"]


def test_both_tutorials_run_the_same_commands():
    def shell(page: str) -> list[str]:
        return [
            command
            for step in steps(page)
            if step.lang == "console"
            for command, _ in commands(step.body)
        ]

    english, russian = (shell(page) for page in PAGES)
    assert english == russian


def test_the_readme_installs_the_way_the_tutorial_does():
    (setup,) = (step for step in steps(PAGES[0]) if step.action == "setup")
    installs = [c for c, _ in commands(setup.body) if c.startswith(("git clone", "pip install"))]
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    shown = {line.strip().removeprefix("$ ") for line in readme.splitlines()}
    assert installs
    assert set(installs) <= shown


@pytest.mark.parametrize("page", PAGES)
def test_the_tutorial_ends_in_a_phone_login(page, reader):
    reader.follow(page)
    # The last step started the site against the real service: it came up and checks clean.
    assert reader.env["VOICEPASSWORD_API_URL"].startswith("https://vp.voicepassword.ru/")
    with requests.Session() as browser:
        browser.trust_env = False
        answer = browser.get(f"http://127.0.0.1:{reader.site_port}/voicepassword/login/")
    assert answer.status_code == 200


# --- the README's five minutes -------------------------------------------------------

README = DOCS.parent / "README.md"
README_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```$", re.DOTALL | re.MULTILINE)


def readme_snippets() -> list[str]:
    """The Python blocks of the README's "Add it to your site in five minutes", dedented."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Add it to your site in five minutes")
    section = text[start : text.index("\n## ", start + 1)]
    return [
        "\n".join(line.removeprefix(match[1]) for line in match[2].splitlines())
        for match in README_BLOCK.finditer(section)
    ]


def test_the_readme_snippets_paste_into_a_new_project(reader):
    """Each snippet, pasted where its first line says, gives a site that checks clean."""
    snippets = readme_snippets()
    assert len(snippets) >= 5
    reader.env["VOICEPASSWORD_API_KEY"] = "a-key-from-the-environment"
    reader.run("django-admin startproject mysite", [])
    reader.run("cd mysite", [])
    pasted = []
    for snippet in snippets:
        where = snippet.splitlines()[0]
        if where.startswith("# settings.py, at the end"):
            target = reader.cwd / "mysite" / "settings.py"
            target.write_text(target.read_text(encoding="utf-8") + "\n" + snippet + "\n")
        elif where == "# urls.py":
            (reader.cwd / "mysite" / "urls.py").write_text(snippet + "\n")
        else:
            # Code for a view or a test of the reader's: it must at least be Python.
            assert where in ("# in a view", "# tests.py"), f"where does this go? {where!r}"
            compile(snippet, where, "exec")
            continue
        pasted.append(where)
        # Complete as it is: the project checks clean after every paste.
        reader.run("python manage.py check", ["System check identified no issues (0 silenced)."])
    assert "# urls.py" in pasted
    reader.run("python manage.py migrate", [])
    reader.serve_site("python manage.py runserver", [])
    for language in ("ru", "en"):
        page = requests.get(
            f"{reader.site}/voicepassword/login/",
            headers={"Accept-Language": language},
            timeout=30,
            proxies={"http": "", "https": ""},
        )
        assert page.status_code == 200
        assert translated(language, "Log in by phone") in page.text
