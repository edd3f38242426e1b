"""Fidelity of the conversion on real pretrained models, by K and by parameter set: the shipped
sets fitted to exp's RMSE (the paper's objective), the default sets fitted to softmax rows, and
per-site calibration (`rewrite --calibrate`). No fine-tuning anywhere.

Models (pip wheels that carry their weights; no model hub):
- rxnmapper 0.4.3's ALBERT (12 layers sharing weights, 8 heads, hidden 256), on the reaction
  SMILES of its own test suite: min cosine of the token embeddings, top-1 agreement of its MLM head;
- antiberty 0.1.3's BERT (8 layers, 8 heads, hidden 512), on antibody chains with 15% of the
  residues masked: top-1 agreement at the masked positions, min cosine of the logits;
- the bundled ViT on the digits test split: accuracy points lost, top-1 agreement.
Every row also gives the largest absolute error of an output (issue 14 compares softmax's and GELU's).
A first row, "fp16 floor", is the exact softmax with its weights rounded to float16 (what a float16
deployment of the original computes there; `compare --noise-floor`): what no conversion can beat.
Calibration uses other inputs than the ones measured (the other half of the data).

    python bench/fidelity.py [--steps 6 8 12] [--wheels DIR]   # wheels: where to find/put the two
        [--activations gelu [--activation-steps 16] [--activation-form gated]]  # + activations: K, form
        [--int8 dynamic|dynamic-optimized]  # the encoders quantized first (onnxruntime's quantizer)

With --int8 the encoders are quantized by onnxruntime's dynamic quantizer (after its transformer
optimizer for `dynamic-optimized`, whose Attention becomes QAttention), each conversion is measured
against the int8 model, and a first row gives the int8 model against its float original.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ort_tools import int8, quietly, working_in  # noqa: E402
from sit_onnx.evaluate.activation_params import choose_activation_params  # noqa: E402
from sit_onnx.evaluate.noise_floor import rounded_attention  # noqa: E402
from sit_onnx.evaluate.site_params import choose_site_params  # noqa: E402
from sit_onnx.graph.convert import RewriteOptions, rewrite_model  # noqa: E402
from sit_onnx.neurons.activation import SHIPPED_STEPS as ACTIVATION_STEPS  # noqa: E402
from sit_onnx.runtime import SessionSpec, make_session  # noqa: E402

SMILES_TOKENS = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
CHAINS = [  # public therapeutic antibody variable domains (heavy, light)
    "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
    "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",
    "QVQLVQSGAEVKKPGSSVKVSCKASGGTFSSYAISWVRQAPGQGLEWMGGIIPIFGTANYAQKFQGRVTITADESTSTAYMELSSLRSEDTAVYYCAR",
    "EVQLLESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVSAISGSGGSTYYADSVKGRFTISRDNSKNTLYLQMNSLRAEDTAVYYCAK",
    "DIVMTQSPDSLAVSLGERATINCKSSQSVLYSSNNKNYLAWYQQKPGQPPKLLIYWASTRESGVPDRFSGSGSGTDFTLTISSLQAEDVAVYYCQQ",
    "EIVLTQSPGTLSLSPGERATLSCRASQSVSSSYLAWYQQKPGQAPRLLIYGASSRATGIPDRFSGSGSGTDFTLTISRLEPEDFAVYYCQQYGSSP",
]


def wheel(name: str, version: str, folder: Path) -> zipfile.ZipFile:
    found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{name}=={version}", "-d", str(folder)],
            check=True,
        )
        found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    return zipfile.ZipFile(found[0])


def extract(archive: zipfile.ZipFile, prefix: str, to: Path) -> Path:
    for member in archive.namelist():
        if member.startswith(prefix) and not member.endswith("/"):
            archive.extract(member, to)
    return to / prefix


def export(model, args, names, path: Path) -> onnx.ModelProto:
    import torch

    with torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=names,
            dynamic_axes={n: {0: "batch"} for n in names},
            opset_version=17,
            dynamo=False,
        )
    return onnx.load(str(path))


def rxnmapper_albert(folder: Path, work: Path):
    import torch
    import transformers

    archive = wheel("rxnmapper", "0.4.3", folder)
    model_dir = extract(archive, "rxnmapper/models/transformers/albert_heads_8_uspto_all_1310k/", work)
    tests = archive.read("tests/test_mapper.py").decode() + archive.read("tests/test_batched_mapper.py").decode()
    reactions = sorted(set(re.findall(r'"([^" ]*>>[^" ]*)"', tests)))
    vocab = {t: i for i, t in enumerate((model_dir / "vocab.txt").read_text().split())}
    rows = [
        [vocab["[CLS]"]] + [vocab.get(t, vocab["[UNK]"]) for t in SMILES_TOKENS.findall(r)] + [vocab["[SEP]"]]
        for r in reactions
    ]
    ids, mask = _pad(rows, vocab["[PAD]"])
    model = transformers.AlbertForMaskedLM.from_pretrained(model_dir).eval()
    onnx_model = export(
        model, (torch.tensor(ids), torch.tensor(mask)), ["input_ids", "attention_mask"], work / "albert.onnx"
    )
    return onnx_model, {"input_ids": ids, "attention_mask": mask}, f"{len(rows)} reactions"


def antiberty_bert(folder: Path, work: Path):
    import torch
    import transformers

    archive = wheel("antiberty", "0.1.3", folder)
    model_dir = extract(archive, "antiberty/trained_models/", work)
    vocab = {t: i for i, t in enumerate((model_dir / "vocab.txt").read_text().split())}
    rng = np.random.default_rng(0)
    rows = []
    for chain in CHAINS * 4:
        tokens = [vocab[a] for a in chain]
        for i in rng.choice(len(tokens), max(1, len(tokens) * 15 // 100), replace=False):
            tokens[i] = vocab["[MASK]"]
        rows.append([vocab["[CLS]"]] + tokens + [vocab["[SEP]"]])
    ids, mask = _pad(rows, vocab["[PAD]"])
    config = transformers.BertConfig.from_pretrained(model_dir / "AntiBERTy_md_smooth")
    model = transformers.BertForMaskedLM(config).eval()
    state = torch.load(model_dir / "AntiBERTy_md_smooth" / "pytorch_model.bin", map_location="cpu")
    model.load_state_dict(state, strict=False)
    onnx_model = export(
        model, (torch.tensor(ids), torch.tensor(mask)), ["input_ids", "attention_mask"], work / "antiberty.onnx"
    )
    return onnx_model, {"input_ids": ids, "attention_mask": mask}, f"{len(rows)} chains, 15% masked"


def _pad(rows, pad: int):
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


def split(feeds: dict) -> tuple[dict, dict]:
    """Calibration rows (even) and measured rows (odd)."""
    return {k: v[0::2] for k, v in feeds.items()}, {k: v[1::2] for k, v in feeds.items()}


def figures(reference: np.ndarray, got: np.ndarray, valid: np.ndarray) -> dict:
    """Min cosine over valid positions (last axis the features), top-1 agreement, and the largest
    absolute error of an output (what issue 14 compares between softmax's and GELU's conversion)."""
    a, b = reference[valid].astype(np.float64), got[valid].astype(np.float64)
    cosine = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {
        "min_cosine": float(cosine.min()),
        "top1": float(np.mean(a.argmax(-1) == b.argmax(-1))),
        "max_abs": float(np.abs(a - b).max()),
    }


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return make_session(model, SessionSpec(verify_kernels=False)).run(None, feeds)[0]


def variants(model, calibration_feeds, steps, activations=(), activation_steps=(), form="direct"):
    for k in steps:
        chosen = {c.name: c.params for c in choose_site_params(model, calibration_feeds, k, rounds=3)}
        if activations and k not in ACTIVATION_STEPS:
            print(f"K={k}: no shipped activation sets (K = {', '.join(map(str, ACTIVATION_STEPS))}): softmax only")
        elif activations:  # softmax and the activations too: what converting them costs, shipped and calibrated
            named = f"+{','.join(activations)}" + (f" {form}" if form != "direct" else "")
            options = RewriteOptions(steps=k, activations=tuple(activations), activation_form=form)
            yield f"K={k} {named}", rewrite_model(model, options)[0]
            for own in activation_steps:  # the activations at their own K (--activation-steps)
                spent = replace(options, activation_steps=own)
                yield f"K={k} {named} at K={own}", rewrite_model(model, spent)[0]
            found = choose_activation_params(model, calibration_feeds, activations, k, gated=form == "gated")
            sets = {c.function: c.params for c in found}
            converted = rewrite_model(model, options, site_params=chosen, activation_sets=sets)[0]
            yield f"K={k} {named} --calibrate", converted
        for objective in ("exp-rmse", "softmax"):
            yield f"K={k} {objective}", rewrite_model(model, RewriteOptions(steps=k, objective=objective))[0]
        yield f"K={k} --calibrate", rewrite_model(model, RewriteOptions(steps=k), site_params=chosen)[0]


def quantized(model: onnx.ModelProto, how: str, work: Path) -> onnx.ModelProto:
    """The model through onnxruntime's dynamic quantizer (`dynamic-optimized`: after its optimizer)."""
    source = work / "float.onnx"
    onnx.save(model, str(source))
    if how == "dynamic-optimized":
        from onnxruntime.transformers import optimizer

        with working_in(work), quietly():
            optimizer.optimize_model(str(source), model_type="bert").save_model_to_file(str(source))
    return int8(source, "dynamic")


def measure(name, model, feeds, valid_of, steps, labels=None, activations=(), activation_steps=(), form="direct"):
    calibration, measured = split(feeds)
    reference = run(model, measured)
    valid = valid_of(measured)
    accuracy = (lambda out: float(np.mean(out.argmax(-1) == labels[1::2]))) if labels is not None else None
    if accuracy:
        print(f"{name:10s} {'original':22s} accuracy {accuracy(reference):.4f}")
    floor = run(rounded_attention(rewrite_model(model, RewriteOptions())[0]), measured)
    print(f"{name:10s} {'fp16 floor':22s} {figures(reference, floor, valid)}{_accuracy_text(accuracy, floor)}")
    for label, converted in variants(model, calibration, steps, activations, activation_steps, form):
        out = run(converted, measured)
        print(f"{name:10s} {label:22s} {figures(reference, out, valid)}{_accuracy_text(accuracy, out)}", flush=True)


def _accuracy_text(accuracy, out) -> str:
    return f" accuracy {accuracy(out):.4f}" if accuracy else ""


def _measure_encoders(args, work: Path) -> None:
    """The two pretrained encoders (int8 first with --int8), each conversion against the original."""
    encoders = {"albert": (rxnmapper_albert, "rxnmapper ALBERT"), "antiberty": (antiberty_bert, "antiberty BERT")}
    for name, (load, title) in encoders.items():
        if name not in args.models:
            continue
        model, feeds, what = load(args.wheels, work)
        print(f"{title} MLM on {what}")
        valid = lambda f: f["attention_mask"].astype(bool)  # noqa: E731
        if args.int8:
            quantized_model = quantized(model, args.int8, work)
            measured = split(feeds)[1]
            against = figures(run(model, measured), run(quantized_model, measured), valid(measured))
            print(f"{name:10s} {'int8 ' + args.int8 + ' vs float':22s} {against}")
            model = quantized_model
        measure(
            name,
            model,
            feeds,
            valid,
            args.steps,
            activations=args.activations,
            activation_steps=args.activation_steps,
            form=args.activation_form,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[6, 8, 12])
    parser.add_argument("--wheels", type=Path, default=Path(tempfile.gettempdir()) / "sit-onnx-wheels")
    parser.add_argument("--models", nargs="+", default=["albert", "antiberty", "vit"])
    parser.add_argument("--activations", nargs="*", default=[], help="also measure with these activations converted")
    parser.add_argument(
        "--activation-steps", type=int, nargs="*", default=[], help="and with the activations at these K of their own"
    )
    parser.add_argument(
        "--activation-form",
        choices=["direct", "gated"],
        default="direct",
        help="the activations' form (rewrite's flag)",
    )
    parser.add_argument(
        "--int8", choices=["dynamic", "dynamic-optimized"], default=None, help="quantize the encoders first"
    )
    args = parser.parse_args()
    args.wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _measure_encoders(args, work)
        if "vit" in args.models:
            from sit_onnx.evaluate.datasets import digits_test

            model = onnx.load(str(Path(__file__).resolve().parents[1] / "models" / "vit_digits.onnx"))
            images, labels = digits_test()
            feeds = {model.graph.input[0].name: images}
            print("bundled ViT on the digits test split")
            valid = lambda f: np.ones(len(next(iter(f.values()))), bool)  # noqa: E731
            measure(
                "vit",
                model,
                feeds,
                valid,
                sorted({4, *args.steps}),
                labels,
                args.activations,
                args.activation_steps,
                args.activation_form,
            )


if __name__ == "__main__":
    main()
