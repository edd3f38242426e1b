"""The install switch for the custom-op library (SIT_ONNX_OPS): OFF configures a pure-Python
install, AUTO without onnxruntime's headers warns and goes on without the library, ON without them
fails, a bad value is refused. CMake is configured only (no compiler run beyond its probes)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
if CMAKE is None:
    pytest.skip("no cmake (the dev extra installs one)", allow_module_level=True)
pytestmark = pytest.mark.slow


def configure(tmp_path, *defines, env=None):
    build = tmp_path / "build"
    environment = {k: v for k, v in os.environ.items() if k not in ("SIT_ONNX_OPS", "ORT_INCLUDE_DIR")}
    environment.update(env or {})
    result = subprocess.run(
        [CMAKE, "-S", str(ROOT), "-B", str(build), "-DSIT_ONNX_CUDA=OFF", *defines],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    makefile = build / "Makefile"
    has_library = makefile.is_file() and "sit_onnx_ops" in (build / "custom_ops" / "Makefile").read_text()
    return result.returncode, result.stdout + result.stderr, has_library


def test_off_builds_no_library(tmp_path):
    rc, log, has_library = configure(tmp_path, "-DSIT_ONNX_OPS=OFF")
    assert rc == 0 and not has_library and "not built (SIT_ONNX_OPS=OFF)" in log


def test_the_environment_variable_sets_it_for_pip(tmp_path):
    rc, log, has_library = configure(tmp_path, env={"SIT_ONNX_OPS": "off"})
    assert rc == 0 and not has_library and "SIT_ONNX_OPS=OFF" in log


def test_auto_without_headers_warns_and_goes_on(tmp_path):
    if Path("/usr/include/onnxruntime/onnxruntime_cxx_api.h").exists():
        pytest.skip("this system has onnxruntime's headers installed")
    rc, log, has_library = configure(tmp_path, "-DSIT_ORT_FETCH=OFF")
    assert rc == 0 and not has_library
    assert "installed WITHOUT its custom-op library" in log and "SIT_ORT_FETCH=OFF" in log


def test_on_without_headers_fails(tmp_path):
    if Path("/usr/include/onnxruntime/onnxruntime_cxx_api.h").exists():
        pytest.skip("this system has onnxruntime's headers installed")
    rc, log, _ = configure(tmp_path, "-DSIT_ONNX_OPS=ON", "-DSIT_ORT_FETCH=OFF")
    assert rc != 0 and "Cannot find onnxruntime's C/C++ headers" in log


def test_given_headers_build_the_library(tmp_path):
    headers = tmp_path / "ort" / "include"
    headers.mkdir(parents=True)
    (headers / "onnxruntime_cxx_api.h").write_text("// stand-in: configure only looks for the file\n")
    rc, log, has_library = configure(tmp_path, f"-DORT_INCLUDE_DIR={headers}")
    assert rc == 0 and has_library and "CPU kernels only" in log


def test_a_bad_value_is_refused(tmp_path):
    rc, log, _ = configure(tmp_path, "-DSIT_ONNX_OPS=maybe")
    assert rc != 0 and "SIT_ONNX_OPS=maybe: use AUTO, ON or OFF" in log


def test_a_plain_install_builds_outside_the_source_tree(tmp_path):
    """pip builds in a temporary folder: nothing is written into the source tree, so a read-only
    tree (a package manager's, a mounted volume) installs. Pure Python here (SIT_ONNX_OPS=OFF) to
    stay quick; the library's build goes the same way."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "models").mkdir()
    for name in ("pyproject.toml", "CMakeLists.txt", "README.md", "models/vit_digits.onnx"):
        shutil.copy(ROOT / name, source / name)
    for name in ("sit_onnx", "custom_ops"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SKBUILD")}
    environment.update(SIT_ONNX_OPS="OFF", PATH=f"{Path(sys.executable).parent}:{environment.get('PATH', '')}")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [w.name for w in (tmp_path / "dist").iterdir()] == ["sit_onnx-0.1.0-py3-none-any.whl"]
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before  # no build/ left behind
