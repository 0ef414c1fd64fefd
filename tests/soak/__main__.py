"""``python -m tests.soak [--minutes N] [--seed S] [--workdir DIR] [--vm-only]`` (``make soak``): the chaos soak;
prints its progress, then the closing table; exit 1 when an invariant was violated."""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

from tests.soak import chaos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak")
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")))
    p.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "0")) or random.SystemRandom().randrange(1, 2**31))
    p.add_argument("--workdir", type=Path, default=os.environ.get("SOAK_WORKDIR") or None,
                   help="kept after the run, logs and repos included (default: SOAK_WORKDIR, else a temporary "
                        "directory, removed)")
    p.add_argument("--vm-only", action="store_true",
                   help="every zone a VM zone (by default eks is a Kubernetes zone when `make kube` has built "
                        "kube-apiserver and etcd)")
    args = p.parse_args(argv)
    # Stopped by SIGINT or SIGTERM, the soak tears its fleet down (KeyboardInterrupt through the
    # run): also when started in the background, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.minutes <= 0:
        print(f"--minutes: {args.minutes:g} is not a positive number of minutes", file=sys.stderr)
        return 2
    print(f"chaos soak: {args.minutes:g} minutes, seed {args.seed} (again: SOAK_SEED={args.seed})", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="federation-soak-"))
    try:
        result = chaos.run(args.minutes, args.seed, workdir, log=lambda line: print(line, flush=True),
                           kube=not args.vm_only)
    finally:
        if args.workdir is None:
            chaos.clean(workdir)
    print()
    print(result.table())
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
