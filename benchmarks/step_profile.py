"""Where a CPU training step of the lab's two models spends its time: torch.profiler's operator table
over 10 steps (after 5 warm-up steps) of a plain loop over the project's own modules, in the layout the
Trainer uses on CPU (channels_last), fp32 and bf16 autocast, on random batches of the lab's sizes.

    python -m benchmarks.step_profile [--rows 12] > profile.txt
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.nn import functional as F
from torch.profiler import profile

from mnist_cnn.runs.build import lab_model

RUNS = {"baseline": 256, "elu": 200}


def step_profile(name: str, bf16: bool, rows: int) -> str:
    batch_size = RUNS[name]
    torch.manual_seed(0)
    module = lab_model(name)
    net = module.net.to(memory_format=torch.channels_last)
    config = module.configure_optimizers()
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    x, y = torch.randn(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(10):
        step()
    ms = (time.perf_counter() - start) / 10 * 1000
    with profile(record_shapes=True) as prof:
        for _ in range(10):
            step()
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=38, max_shapes_column_width=60
    )
    return f"== {name} (batch {batch_size}), {'bf16 autocast' if bf16 else 'fp32'}: {ms:.1f} ms a step unprofiled ==\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    for name in RUNS:
        for bf16 in (True, False):
            print(step_profile(name, bf16, args.rows), flush=True)


if __name__ == "__main__":
    main()
