"""README's test command (b) is what CI runs: scripts/run_tests.sh holds the same command line,
and .ci/run runs that script."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_command(label: str) -> str:
    """The command line under the ``# (label)`` comment of README's first code block."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"# ({label})"):
            assert i + 1 < len(lines), f"README.md: '# ({label})' has no command after it"
            return lines[i + 1]
    raise AssertionError(f"README.md has no '# ({label})' command")


def script_command(text: str) -> str:
    """The one command line of scripts/run_tests.sh: its last line that is not blank, not a
    comment and not a shell setting (``set``, ``cd``)."""
    commands = [line for line in text.splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert len(commands) == 1, f"run_tests.sh should hold one command line, found {commands}"
    return commands[0]


def test_readme_test_command_is_what_ci_runs():
    script = (ROOT / "scripts" / "run_tests.sh").read_text()
    assert readme_command("b") == script_command(script)


def test_ci_runs_the_test_script():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^gate .* bash scripts/run_tests\.sh$", ci, re.MULTILINE)
    assert "README.md" not in ci, "CI must not read its commands out of README.md"


def test_readme_starts_with_the_two_commands():
    # The main job (a) and the tests (b), each installing what it needs.
    assert "alae-fast train" in readme_command("a")
    assert "pip install" in readme_command("a") and "pip install" in readme_command("b")
    assert "pytest" in readme_command("b")


def test_script_command_sees_a_difference():
    # A script whose command drifted from README's must not pass the comparison above.
    drifted = "set -euo pipefail\ncd x\n" + readme_command("b").replace("-q", "-x -q", 1) + "\n"
    assert script_command(drifted) != readme_command("b")
    with pytest.raises(AssertionError, match="one command line"):
        script_command("set -e\necho one\necho two\n")
