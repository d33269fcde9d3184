"""mnist-explain, its command line read (mnist_cnn.cli.commands): a figure per image of where the network looks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.explain.attributions import explained
from mnist_cnn.explain.figures import explained_figure
from mnist_cnn.figures import save_figure
from mnist_cnn.inference.loader import load_network
from mnist_cnn.inference.predict import prepared, say_problems


def main(args) -> None:
    """mnist-explain, its command line read (mnist_cnn.cli.commands): for each readable image, a figure in
    args.out (the image as the network reads it, where it looks, its three likeliest classes), or with
    --json the numbers; each image that cannot be read is one line on stderr, and the exit status 1."""
    net, data = load_network(args.ckpt)
    classes = DATASETS[data["dataset"]].classes
    read, images, problems = prepared(args.inputs, args.max_pixels, data["dataset"])
    results = []
    if images:
        out = Path(args.out)
        if not args.json:
            out.mkdir(parents=True, exist_ok=True)
        probabilities, maps = explained(net, data, np.stack(images))
        for f, image, p, attribution in zip(read, images, probabilities, maps):
            top = [(classes[int(i)], float(p[i])) for i in p.argsort(descending=True)[:3]]
            result = {
                "file": str(f),
                "label": top[0][0],
                "probability": round(top[0][1], 6),
                "top3": [{"label": c, "probability": round(q, 6)} for c, q in top],
            }
            if args.json:
                result["attribution"] = [[round(float(v), 6) for v in row] for row in attribution]
            else:
                path = out / f"{f.stem}.explained.png"
                save_figure(
                    explained_figure(image, attribution, top, f"{f.name}: read as '{top[0][0]}' ({top[0][1]:.3f})"),
                    path,
                )
                result["figure"] = str(path)
            results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['file']}: {r['label']} (probability {r['probability']:.4f}); {r['figure']}")
    say_problems("mnist-explain", problems)
