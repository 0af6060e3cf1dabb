"""The documentation site builds cleanly, its generated references cover the code, and no page narrates history.

`mkdocs build --strict` fails on any warning: a broken link or anchor, a page missing from the nav, an API name
mkdocstrings cannot find. The expected subcommands and config fields are read from the code here, independently of
docs/gen_ref.py, so a generator that skipped one would fail.
"""

import argparse
import dataclasses
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adapters_kit.cli import _parser
from adapters_kit.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")
SESSION = re.compile(r"\bsessions?\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    r = subprocess.run([str(MKDOCS), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir",
                        str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """The page's article, tags stripped and entities decoded: what a reader sees."""
    source = (site / page / "index.html").read_text()
    start, end = source.find("<article"), source.rfind("</article>")
    assert start >= 0 and end > start, f"{page}: no <article> in the built page"
    return html.unescape(re.sub(r"<[^>]+>", " ", source[start:end]))


def test_the_site_builds_strict(site):
    for page in ("index.html", "reference/cli/index.html", "reference/config/index.html", "reference/api/index.html"):
        assert (site / page).is_file(), page


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert actions, "adapters-kit has no subcommands?"
    return {name: sub for a in actions for name, sub in a.choices.items()}


def test_cli_reference_has_every_subcommand_and_flag(site):
    text = " ".join(page_text(site, "reference/cli").split())
    commands = subcommands(_parser())
    assert {"train", "eval", "export"} <= set(commands)
    for name, sub in commands.items():
        assert f"adapters-kit {name}" in text, f"subcommand {name} missing from the CLI reference"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{name} {flag} missing"


def test_config_reference_has_every_field(site):
    source = (site / "reference" / "config" / "index.html").read_text()
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert len(fields) > 50
    missing = [name for name in fields if f'id="{name}"' not in source]
    assert not missing, f"fields without a section in the config reference: {missing}"


def test_api_reference_documents_the_public_names(site):
    import adapters_kit

    text = page_text(site, "reference/api")
    for name in adapters_kit.__all__:
        assert name in text, f"adapters_kit.{name} missing from the API reference"


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


def markdown_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = {ROOT / line for line in tracked.stdout.splitlines() if line}
    files |= set((ROOT / "docs").rglob("*.md"))  # pages not committed yet count too
    return sorted(f for f in files if f.is_file())


def test_no_page_narrates_development_history(site):
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "CHANGELOG.md" in files
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if SESSION.search(line)]
    # The generated pages are built from docstrings and help texts: check what the site shows too.
    for page in sorted(site.rglob("index.html")):
        name = str(page.parent.relative_to(site))
        text = page_text(site, name)
        found += [f"site {name}: ...{text[max(0, m.start() - 40):m.end() + 40]}..." for m in SESSION.finditer(text)]
    assert not found, "pages that say 'session':\n" + "\n".join(found)
