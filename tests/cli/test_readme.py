"""The README's "Use" block runs as written: every `sit-onnx` line, from the repository root."""

import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from sit_onnx.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _use_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Use\n.*?```\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("sit-onnx ")]


LINES = _use_lines()


def test_the_use_block_is_found():
    assert len(LINES) >= 8 and LINES[0].startswith("sit-onnx rewrite")


@pytest.mark.parametrize("line", LINES)
def test_readme_use_line_runs(line, tmp_path):
    args = shlex.split(line)[1:]
    args = [a.replace("/tmp/", f"{tmp_path}/") for a in args]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        if "/vit.sit.onnx" in line and not line.startswith("sit-onnx rewrite"):
            first = shlex.split(LINES[0])[1:]
            assert CliRunner().invoke(main, [a.replace("/tmp/", f"{tmp_path}/") for a in first]).exit_code == 0
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
