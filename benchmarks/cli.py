"""`keras-models benchmark`: the thin command over `benchmarks.speed` (registered as an entry point)."""

from __future__ import annotations

import sys
from pathlib import Path

from keras_models.arguments import ints, nonnegative_int, positive_int, words


def _cmd_benchmark(args) -> None:
    from benchmarks.speed import BenchmarkError, BenchOptions, plot, ratios, run, write_csv

    options = BenchOptions(
        models=args.model, bench=args.bench, batch_sizes=args.batch_size, img_sizes=args.img_size,
        precision=args.precision, jit_compile=args.jit_compile, runtimes=args.runtime, graph=args.graph,
        compare=args.compare, threads=args.threads, warmup=args.warmup, iters=args.iters,
        peak_gflops=args.peak_gflops, command="keras-models " + " ".join(sys.argv[1:]))
    csv_path = Path(args.results_file)
    if csv_path.suffix != ".csv":
        raise BenchmarkError(f"--results-file {csv_path} must end with .csv")
    rows = run(options, progress=lambda line: print(f"  {line}", flush=True))
    write_csv(rows, csv_path)
    chart = plot(rows, Path(args.plot) if args.plot else csv_path.with_suffix(".png"), options.command)
    print(f"{'impl':<19}{'model':<18}{'runtime':<12}{'batch':>6}{'px':>5}{'infer img/s':>13}{'ms':>9}"
          f"{'train img/s':>13}{'ms':>9}")
    for r in rows:
        def cell(key, spec):
            return format(r[key], spec) if r.get(key) is not None else "-"
        print(f"{r['impl']:<19}{r['model']:<18}{r['runtime']:<12}{r['infer_batch_size']:>6}{r['infer_img_size']:>5}"
              f"{cell('infer_samples_per_sec', '.1f'):>13}{cell('infer_step_time', '.1f'):>9}"
              f"{cell('train_samples_per_sec', '.1f'):>13}{cell('train_step_time', '.1f'):>9}")
    for line in ratios(rows):
        print(line)
    print(f"wrote {csv_path} and {chart}")


def add_subcommands(sub) -> None:
    """Register `benchmark` on an argparse subparsers object."""
    p = sub.add_parser("benchmark", help="timm-style speed table (CSV + PNG), optionally against peers",
                       description="Time inference and/or a training step on synthetic images: warm-up, then "
                                   "repeated steps (median and 10th/90th percentiles), in columns named like timm's.")
    p.add_argument("--model", type=words, default=["rexnet_100"], help="comma list of registry names")
    p.add_argument("--bench", default="both", help="infer, train or both")
    p.add_argument("--batch-size", type=ints, default=[1, 32], help="comma list, e.g. 1,8,32,64")
    p.add_argument("--img-size", type=ints, default=[224], help="comma list, e.g. 128,224,320")
    p.add_argument("--precision", default="float32", help="float32, mixed_float16 or mixed_bfloat16")
    p.add_argument("--jit-compile", default="auto", help="XLA: auto (GPU/TPU only), on or off")
    p.add_argument("--runtime", type=words, default=["keras"],
                   help="comma list of keras, saved_model, tflite, tflite-int8")
    p.add_argument("--graph", default="inference",
                   help="keras inference graph: inference (BN folded, fused depthwise/SE units) or plain")
    p.add_argument("--compare", type=words, default=[], help="keras.applications and/or timm, in the same run")
    p.add_argument("--threads", type=nonnegative_int, default=0,
                   help="intra-op threads for TF, TFLite and torch (0: all cores)")
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--iters", type=positive_int, default=10, help="timed steps per configuration")
    p.add_argument("--peak-gflops", type=float,
                   help="this CPU's float32 peak (benchmarks/fma_peak), for float32 runs' %% of peak")
    p.add_argument("--results-file", default="benchmark.csv", help="CSV to write; the chart goes beside it (.png)")
    p.add_argument("--plot", help="chart path (default: the results file with .png)")
    p.set_defaults(func=_cmd_benchmark)
