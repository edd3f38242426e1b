"""`sit-onnx demo`: convert the bundled ViT, run both on the digits test set, show what changed."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import table

BUNDLED_NAME = "vit_digits.onnx"
CHECKOUT_COPY = Path(__file__).resolve().parents[2] / "models" / BUNDLED_NAME


def bundled_model() -> Path:
    """The ViT trained on digits: installed with the package, or in a source checkout's models/."""
    from sit_onnx.installed import find_installed

    return find_installed(f"bundled/{BUNDLED_NAME}") or CHECKOUT_COPY


@click.command()
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Model to convert (default: the bundled ViT trained on digits).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Where the converted model is written.",
)
@click.option("--steps", "-k", type=int, default=12, show_default=True)
def demo(model, output_dir, steps):
    """The main job end to end: SIT-conversion of a trained Transformer, and what it costs."""
    from sit_onnx.cli.energy import energy_text
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.evaluate.energy import estimate_energy
    from sit_onnx.evaluate.experiment import ModelPair, evaluate_accuracy, labelled_data, sample_feeds
    from sit_onnx.evaluate.site_error import site_errors
    from sit_onnx.graph.convert import RewriteOptions
    from sit_onnx.graph.convert_file import default_output, rewrite_file
    from sit_onnx.graph.load import load_model
    from sit_onnx.runtime.library import library_available

    model = model or bundled_model()
    if not model.is_file():
        raise SitOnnxError(
            f"{model}: model not found (the bundled one is trained by `python models/train.py --arch vit --out models`)"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / default_output(model).name
    report = rewrite_file(model, target, RewriteOptions(steps=steps), force=True)
    click.echo(f"1. converted {model} -> {target}")
    click.echo(
        f"   {len(report.converted)} softmax sites -> SpikingSoftmax = [x - max] SpikingExp(K={steps}) SpikingNorm "
        "(max-shift, amplified SI-norm, fused)"
    )
    pair = ModelPair(load_model(model), load_model(target), report)
    labelled = labelled_data(pair.original, None, "digits")
    runtime = "custom-op kernels" if library_available() else "function fallback (library not built)"
    accuracy = evaluate_accuracy(pair, labelled)
    click.echo(f"2. accuracy on the {labelled.source}, onnxruntime CPU with {runtime}:")
    click.echo(
        f"   ANN {100 * accuracy.ann_accuracy:.2f}% | converted {100 * accuracy.converted_accuracy:.2f}% | "
        f"agreement {100 * accuracy.agreement:.2f}% | loss {accuracy.loss_points:+.2f} points"
    )
    feeds = sample_feeds(pair.original, labelled, 64)
    errors = site_errors(pair.converted, report, feeds)
    click.echo("3. per-site error of Spiking-Softmax against softmax of the same logits (64 test images):")
    click.echo(
        table(
            [[e.name, e.max_abs, e.mean_abs, e.kl] for e in errors], ["site", "max abs error", "mean abs error", "KL"]
        )
    )
    click.echo("4. energy estimate per image (paper's section 4.1.2):")
    click.echo(energy_text(estimate_energy(pair.original, pair.converted, feeds)))
    click.echo(f"converted model: {target.resolve()}")
