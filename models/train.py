"""Train the reference Transformers on the digits set, export them to ONNX, record ANN accuracy.

    python models/train.py                      # all four, into ~/.cache/sit-onnx/models
    python models/train.py --arch vit --out models   # the bundled default

For each architecture it writes NAME_digits.onnx (opset 17), NAME_sigmoid_digits.onnx
(Sigmoid inserted before every softmax, then fine-tuned: the paper's path), and for
the ViT also vit_digits_opset11.onnx; training.json records the accuracies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.architectures import ARCHITECTURES  # noqa: E402
from sit_onnx.atomic import write_text_atomic  # noqa: E402
from sit_onnx.evaluate.datasets import digits_split  # noqa: E402
from sit_onnx.export import export_module  # noqa: E402

DEFAULT_OUT = Path(os.environ.get("SIT_ONNX_CACHE", Path.home() / ".cache" / "sit-onnx")) / "models"


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train(model, x, y, epochs: int, lr: float, seed: int = 0):
    torch.manual_seed(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, lr, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx], label_smoothing=0.05)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="all", help="comma-separated: " + ",".join(ARCHITECTURES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--finetune-epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    names = list(ARCHITECTURES) if args.arch == "all" else args.arch.split(",")
    x_train, x_test, y_train, y_test = digits_split()
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "training.json"
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    example = torch.from_numpy(x_test[:2])
    for name in names:
        torch.manual_seed(0)
        base = train(ARCHITECTURES[name](), x_train, y_train, args.epochs, 3e-3)
        base_acc = accuracy(base, x_test, y_test)
        export_module(base, example, args.out / f"{name}_digits.onnx", opset=17)
        if name == "vit":
            export_module(base, example, args.out / f"{name}_digits_opset11.onnx", opset=11)
        # the paper's path: insert a Sigmoid before each softmax, then fine-tune
        tuned = ARCHITECTURES[name](sigmoid=True)
        tuned.load_state_dict(base.state_dict())
        before_finetune = accuracy(tuned, x_test, y_test)
        tuned = train(tuned, x_train, y_train, args.finetune_epochs, 1e-3, seed=1)
        tuned_acc = accuracy(tuned, x_test, y_test)
        export_module(tuned, example, args.out / f"{name}_sigmoid_digits.onnx", opset=17)
        records[name] = {
            "ann_accuracy": base_acc,
            "sigmoid_inserted_accuracy": before_finetune,
            "sigmoid_finetuned_accuracy": tuned_acc,
            "epochs": args.epochs,
            "finetune_epochs": args.finetune_epochs,
            "parameters": sum(p.numel() for p in base.parameters()),
        }
        print(
            f"{name}: ANN {100 * base_acc:.2f}% | Sigmoid inserted {100 * before_finetune:.2f}% -> fine-tuned "
            f"{100 * tuned_acc:.2f}%",
            flush=True,
        )
        write_text_atomic(record_path, json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
