"""mnist-explain, its command line read (mnist_cnn.cli.commands): a figure per image of where the network looks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.explain.attributions import explained
from mnist_cnn.explain.figures import explained_figure
from mnist_cnn.figures import save_figure
from mnist_cnn.inference.ensemble import load_models
from mnist_cnn.inference.predict import prepared, say_problems

HESITATION = 0.3  # the runner-up's map is drawn where its probability is this close to the class read's


def rounded(attribution) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in attribution]


def main(args) -> None:
    """mnist-explain, its command line read (mnist_cnn.cli.commands): for each readable image, a figure in
    args.out (the image as the network reads it, where it looks, its three likeliest classes), or with
    --json the numbers; each image that cannot be read is one line on stderr, and the exit status 1."""
    net, data = load_models(args.ckpts)
    classes = DATASETS[data["dataset"]].classes
    read, images, problems = prepared(args.inputs, args.max_pixels, data["dataset"])
    results = []
    if images:
        out = Path(args.out)
        if not args.json:
            out.mkdir(parents=True, exist_ok=True)
        probabilities, maps = explained(net, data, np.stack(images))
        for f, image, p, pair in zip(read, images, probabilities, maps):
            top = [(classes[int(i)], float(p[i])) for i in p.argsort(descending=True)[:3]]
            hesitated = top[0][1] - top[1][1] <= HESITATION
            result = {
                "file": str(f),
                "label": top[0][0],
                "probability": round(top[0][1], 6),
                "top3": [{"label": c, "probability": round(q, 6)} for c, q in top],
            }
            if args.json:
                result["attribution"] = rounded(pair[0])
                if hesitated:
                    result["runner_up"] = {"label": top[1][0], "attribution": rounded(pair[1])}
            else:
                path = out / f"{f.stem}.explained.png"
                title = f"{f.name}: read as '{top[0][0]}' ({top[0][1]:.3f})"
                if hesitated:
                    title += f", or '{top[1][0]}' ({top[1][1]:.3f})?"
                save_figure(explained_figure(image, list(pair[: 2 if hesitated else 1]), top, title), path)
                result["figure"] = str(path)
            results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['file']}: {r['label']} (probability {r['probability']:.4f}); {r['figure']}")
    say_problems("mnist-explain", problems)
