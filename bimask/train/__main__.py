"""python -m bimask.train: train one model with one N:M mask method.

Examples:
  python -m bimask.train --model cnn --method bimask --pattern 2:4 --epochs 10 --out runs/cnn24
  python -m bimask.train --dataset synthetic --model mlp --method bimask --epochs 1 --out /tmp/r
  python -m bimask.train --backend kernels --tuned-configs tuned.json --model mlp --out runs/t
  torchrun --nproc_per_node=2 -m bimask.train --dataset synthetic --model mlp --out /tmp/ddp
  python -m bimask.train --dataset synthetic --model mlp --perm-realisation physical --epochs 1
"""

from __future__ import annotations

import argparse
import sys

from bimask import cli_args as ca
from bimask.backends import BACKENDS
from bimask.data import DataMissingError
from bimask.data.idx import IdxError
from bimask.methods import METHODS
from bimask.models import MODELS
from bimask.outputs import check_output_dir
from bimask.permutations import PERMUTATIONS
from bimask.realisation import PERM_REALISATIONS
from bimask.train.config import DATASETS, OPTIMIZERS, TrainConfig
from bimask.train.loop import train


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bimask.train",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TrainConfig()
    p.add_argument("--model", choices=sorted(MODELS), default=d.model)
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    p.add_argument("--data-dir", help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--method", choices=sorted(METHODS), default=d.method)
    p.add_argument(
        "--pattern", type=ca.pattern, default=d.pattern, help="N:M pattern, e.g. 2:4, 1:16"
    )
    p.add_argument("--permutation", choices=sorted(PERMUTATIONS), default=d.permutation)
    p.add_argument("--perm-every", type=ca.positive_int, default=d.perm_every)
    p.add_argument(
        "--perm-realisation",
        choices=sorted(PERM_REALISATIONS),
        default=d.perm_realisation,
        help="gather (default, the paper's): the backward gathers dY into pi order; physical "
        "(bimask only, a DIFFERENT method): every --perm-every steps a Linear's rows and its "
        "consumer's input columns (Linear -> elementwise -> Linear) are reordered by pi, so no "
        "gather is needed, but the consumer's forward N:M groups, and so its masks, change",
    )
    p.add_argument(
        "--candidates", type=ca.positive_int, default=d.candidates, help="for --permutation random"
    )
    p.add_argument("--decay", type=ca.nonneg_float, default=d.decay, help="SR-STE lambda")
    p.add_argument("--epochs", type=ca.positive_int, default=d.epochs)
    p.add_argument("--batch-size", type=ca.positive_int, default=d.batch_size)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=ca.positive_float)
    p.add_argument("--weight-decay", type=ca.nonneg_float)
    p.add_argument("--warmup-epochs", type=ca.nonneg_float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=ca.unit_fraction, default=d.label_smoothing)
    p.add_argument("--train-subset", type=ca.positive_int, help="use the first N training images")
    p.add_argument("--test-subset", type=ca.positive_int, help="use the first N test images")
    p.add_argument("--seed", type=ca.nonneg_int, default=d.seed)
    p.add_argument("--device", type=ca.device, default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--conv-order", choices=["nhwc", "nchw"], default=d.conv_order)
    p.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=d.backend,
        help="GEMMs of the sparse layers: torch, kernels (this project's sparse kernels), "
        "cusparselt (NVIDIA cuSPARSELt) or cutlass_sm90 (CUTLASS 3.x sm90 builds, Hopper); all "
        "but torch: CUDA, Linear layers",
    )
    p.add_argument(
        "--tuned-configs",
        metavar="FILE",
        help="a sweep's winners for the backend's GEMMs (python -m suite export-tuned RUN --out "
        "FILE); read and checked before the run starts",
    )
    p.add_argument(
        "--profile-steps",
        type=ca.nonneg_int,
        default=d.profile_steps,
        help="print the per-step time breakdown (masks, permutation, compress, gather, GEMMs, "
        "optimizer, other) of the first N steps of each epoch; stored in the history",
    )
    p.add_argument("--out", default=d.out)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--stop-after", type=ca.positive_int, help="stop after N epochs of this invocation"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = TrainConfig(**vars(args))
        check_output_dir(args.out, "--out")
        train(cfg)
    except (ValueError, DataMissingError, IdxError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
