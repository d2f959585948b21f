"""`keras-models benchmark`: the thin command over `benchmarks.speed` (registered as an entry point)."""

from __future__ import annotations

import sys
from pathlib import Path

from keras_models.arguments import ints, nonnegative_int, positive_int, words


def _cmd_benchmark(args) -> None:
    if args.bench == "data":
        return _cmd_data(args)
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


def _cmd_data(args) -> None:
    """`--bench data`: the training input pipeline alone, ours and the peers on the same files."""
    from benchmarks import data_bench

    options = data_bench.DataBenchOptions(
        data=args.data, image_size=args.img_size[0], batch_size=args.batch_size[-1], randaugment=args.randaugment,
        randaugment_mstd=args.randaugment_mstd, mixup=args.mixup, cutmix=args.cutmix, compare=args.compare,
        warmup=args.warmup, batches=args.iters, repeats=args.repeats, rounds=args.rounds, workers=args.threads,
        service_workers=args.data_service,
        command="keras-models " + " ".join(sys.argv[1:]))
    csv_path = Path(args.results_file)
    if csv_path.suffix != ".csv":
        raise data_bench.DataBenchError(f"--results-file {csv_path} must end with .csv")
    rows = data_bench.run(options, progress=lambda line: print(f"  {line}", flush=True))
    data_bench.write_csv(rows, csv_path)
    chart = data_bench.plot(rows, Path(args.plot) if args.plot else csv_path.with_suffix(".png"), options.command)
    print(f"{'pipeline':<26}{'img/s':>9}{'p10':>9}{'p90':>9}{'per core':>10}{'ours vs':>9}")
    for r in rows:
        print(f"{r['impl']:<26}{r['data_samples_per_sec']:>9.1f}{r['data_samples_per_sec_p10']:>9.1f}"
              f"{r['data_samples_per_sec_p90']:>9.1f}{r['per_core']:>10.1f}"
              f"{rows[0]['data_samples_per_sec'] / r['data_samples_per_sec']:>8.2f}x")
    print(f"wrote {csv_path} and {chart}")


def add_subcommands(sub) -> None:
    """Register `benchmark` on an argparse subparsers object."""
    p = sub.add_parser("benchmark", help="timm-style speed table (CSV + PNG), optionally against peers",
                       description="Time inference and/or a training step on synthetic images: warm-up, then "
                                   "repeated steps (median and 10th/90th percentiles), in columns named like timm's.")
    p.add_argument("--model", type=words, default=["rexnet_100"], help="comma list of registry names")
    p.add_argument("--bench", default="both", help="infer, train, both, or data (the training input pipeline "
                   "alone: --data, --randaugment, --mixup, --cutmix; --compare timm,legacy,garden)")
    p.add_argument("--batch-size", type=ints, default=[1, 32], help="comma list, e.g. 1,8,32,64")
    p.add_argument("--img-size", "--image-size", type=ints, default=[224], help="comma list, e.g. 128,224,320")
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
    p.add_argument("--data", help="--bench data: folder:PATH or tfrecord:GLOB (default: a JPEG folder made from "
                   "the bundled photos)")
    p.add_argument("--randaugment", type=nonnegative_int, default=0, help="--bench data: magnitude (0: off)")
    p.add_argument("--randaugment-mstd", type=float, default=0.0, help="--bench data: magnitude std")
    p.add_argument("--mixup", type=float, default=0.0, help="--bench data: MixUp alpha")
    p.add_argument("--cutmix", type=float, default=0.0, help="--bench data: CutMix alpha")
    p.add_argument("--repeats", type=positive_int, default=3, help="--bench data: timed repeats of --iters batches")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="--bench data: run ours and every peer this many times, interleaved (drift-fair medians)")
    p.add_argument("--data-service", type=ints, default=[], help="--bench data: also our pipeline on a local "
                   "tf.data service with each of these numbers of worker processes, e.g. 1,2")
    p.add_argument("--results-file", default="benchmark.csv", help="CSV to write; the chart goes beside it (.png)")
    p.add_argument("--plot", help="chart path (default: the results file with .png)")
    p.set_defaults(func=_cmd_benchmark)
