"""Speed benchmarks (`keras-models benchmark`): timm-style speed tables for our models and their peers, side by side.

Every configuration is timed the same way: synthetic inputs made once, `warmup` untimed steps,
then `iters` timed steps; the row keeps the median step time and the 10th/90th percentiles.
Columns follow timm's `benchmark.py` (`infer_samples_per_sec`, `infer_step_time` in ms,
`param_count` in millions, `infer_gmacs` per image, ...) plus the settings, device and versions.
The `keras` runtime runs on TensorFlow or JAX (`KERAS_BACKEND=jax`: each step is one jitted
stateless call, which is how JAX users train); the export runtimes need TensorFlow. timm runs in
a child process that never imports TensorFlow, on the GPU when the parent's backend has one.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from keras_models.backend import JIT_SETTINGS, PRECISIONS

BENCHES = ("infer", "train", "both")
RUNTIMES = ("keras", "saved_model", "tflite", "tflite-int8")
GRAPHS = ("inference", "plain")  # ours: BN-folded fused units, or the training graph
PEERS = ("keras.applications", "timm")
COLUMNS = (
    "model", "impl", "runtime", "graph", "precision", "jit_compile", "threads",
    "infer_samples_per_sec", "infer_step_time", "infer_step_time_p10", "infer_step_time_p90",
    "infer_batch_size", "infer_img_size", "infer_gmacs", "infer_pct_of_peak", "infer_peak_rss_mb",
    "train_samples_per_sec", "train_step_time", "train_step_time_p10", "train_step_time_p90",
    "train_batch_size", "train_img_size", "train_peak_rss_mb",
    "param_count", "device", "peak_gflops", "onednn", "versions", "command",
)


class BenchmarkError(ValueError):
    """Bad options, said in one line with the fix."""


@dataclass
class BenchOptions:
    models: list[str] = field(default_factory=lambda: ["rexnet_100"])
    bench: str = "both"
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    img_sizes: list[int] = field(default_factory=lambda: [224])
    precision: str = "float32"
    jit_compile: str = "auto"
    runtimes: list[str] = field(default_factory=lambda: ["keras"])
    graph: str = "inference"
    compare: list[str] = field(default_factory=list)
    threads: int = 0  # 0: every core
    warmup: int = 3
    iters: int = 10
    num_classes: int = 1000
    peak_gflops: float | None = None  # this CPU's float32 FMA peak, for `infer_pct_of_peak`
    command: str = ""

    def check(self) -> None:
        from keras_models.models import get_entry

        if not self.models or not all(self.models):
            raise BenchmarkError("--model needs at least one registry name, e.g. rexnet_100")
        for name in self.models:
            get_entry(name)  # raises with the close names
        if self.threads < 0 or self.warmup < 0 or self.iters < 1:
            raise BenchmarkError("--threads and --warmup must be >= 0 and --iters >= 1")
        for value, allowed, what in ((self.bench, BENCHES, "--bench"), (self.precision, PRECISIONS, "--precision"),
                                     (self.jit_compile, JIT_SETTINGS, "--jit-compile"),
                                     (self.graph, GRAPHS, "--graph")):
            if value not in allowed:
                raise BenchmarkError(f"{what} {value!r} is not one of {', '.join(allowed)}")
        for runtime in self.runtimes:
            if runtime not in RUNTIMES:
                raise BenchmarkError(f"--runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
        for peer in self.compare:
            if peer not in PEERS:
                raise BenchmarkError(f"--compare {peer!r} is not one of {', '.join(PEERS)}")
            if peer == "keras.applications":  # before any model is built or timed
                for name in self.models:
                    keras_applications_name(name)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise BenchmarkError("--batch-size takes positive integers, e.g. 1,32")
        if not self.img_sizes or min(self.img_sizes) < 32:
            raise BenchmarkError("--img-size takes sizes >= 32, e.g. 224 or 128,224,320")
        if self.warmup < 0 or self.iters < 1:
            raise BenchmarkError("--warmup must be >= 0 and --iters >= 1")
        if self.precision != "float32" and set(self.runtimes) - {"keras"}:
            raise BenchmarkError("mixed precision applies to the keras runtime; export runtimes are float32/int8")
        from keras_models.backend import backend

        if backend() != "tensorflow" and set(self.runtimes) - {"keras"}:
            raise BenchmarkError(f"--runtime {','.join(self.runtimes)} needs the TensorFlow backend "
                                 f"(KERAS_BACKEND={backend()} times the keras runtime only)")


def timed(step: Callable[[], object], warmup: int, iters: int) -> dict[str, float]:
    """Median and 10th/90th percentile step time in ms; `step` must block until its result exists."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return {"step_time": median, "step_time_p10": p10, "step_time_p90": p90}


class PeakRSS:
    """Peak resident memory of this process inside the block (Linux: VmHWM reset via clear_refs)."""

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        self.mb = None
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.mb = int(line.split()[1]) / 1024
        except OSError:
            import resource

            self.mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name() -> str:
    """The accelerator the backend runs on (JAX or TF GPU), else the CPU's model name."""
    from keras_models.backend import accelerator_present, backend

    if accelerator_present():
        if backend() == "jax":
            import jax

            return jax.devices()[0].device_kind
        import tensorflow as tf

        gpu = tf.config.list_physical_devices("GPU")[0]
        return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
    return cpu_name()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Our registry name -> the keras.applications constructor of the same architecture.
KERAS_APPLICATIONS = {**{f"tf_efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
                      **{f"tf_efficientnetv2_b{i}": f"EfficientNetV2B{i}" for i in range(4)},
                      **{f"tf_efficientnetv2_{s}": f"EfficientNetV2{s.upper()}" for s in "sml"}}


def keras_applications_name(name: str) -> str:
    if name not in KERAS_APPLICATIONS:
        raise BenchmarkError(f"keras.applications has no twin of {name}; "
                             f"it has {', '.join(sorted(KERAS_APPLICATIONS))}")
    return KERAS_APPLICATIONS[name]


def keras_applications_twin(name: str, img_size: int, num_classes: int):
    """The keras.applications model with the same architecture, or a BenchmarkError."""
    import keras

    return getattr(keras.applications, keras_applications_name(name))(
        weights=None, input_shape=(img_size, img_size, 3), classes=num_classes, classifier_activation=None)


class Bench:
    """Runs one model (ours or keras.applications') in every requested runtime and bench."""

    def __init__(self, options: BenchOptions):
        import keras

        from keras_models.backend import use_jit

        self.o, self.keras = options, keras
        self.jax = keras.backend.backend() == "jax"
        if self.jax:
            self.tf = None
            self.jit = True  # JAX compiles every step with XLA; there is no graph without it
        else:
            import tensorflow as tf

            self.tf = tf
            self.jit = use_jit(options.jit_compile)
        keras.config.set_dtype_policy(options.precision)
        self.rng = np.random.default_rng(0)

    def build(self, name: str, impl: str, size: int):
        from keras_models.factory import create_model

        if impl == "keras.applications":
            return keras_applications_twin(name, size, self.o.num_classes)
        return create_model(name, input_shape=(size, size, 3), num_classes=self.o.num_classes,
                            classifier_activation=None)

    def images(self, batch: int, size: int):
        """Made once, on the backend's default device (the GPU when there is one)."""
        pixels = self.rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
        return self.keras.ops.convert_to_tensor(pixels)

    def infer_step(self, model, runtime: str, impl: str, batch: int, size: int, tmp: Path) -> Callable[[], object]:
        tf, x = self.tf, self.images(batch, size)
        if runtime == "keras":
            if impl == "keras_models" and self.o.graph == "inference":
                from keras_models.inference import inference_model

                model = inference_model(model, "on" if self.jit else "off")  # the fused units carry XLA
                if self.jax:
                    return jax_infer_step(model, x)
                fn = tf.function(lambda t: model(t, training=False))
            elif self.jax:
                return jax_infer_step(model, x)
            else:
                fn = tf.function(lambda t: model(t, training=False), jit_compile=self.jit)
            return lambda: fn(x).numpy()
        from keras_models.export.lite import LiteModel, convert, inference_saved_model

        if runtime == "saved_model":
            with inference_saved_model(model, batch) as path:
                loaded = tf.saved_model.load(path)
            serve = loaded.signatures["serving_default"]
            return lambda: next(iter(serve(x).values())).numpy()
        quant = "int8" if runtime == "tflite-int8" else "float32"
        calibration = list(self.rng.uniform(0, 255, (8, size, size, 3)).astype(np.float32))
        path = tmp / f"{model.name}_{quant}_{batch}_{size}.tflite"
        path.write_bytes(convert(model, quant, calibration=calibration, batch_size=batch))
        lite, pixels = LiteModel(path, num_threads=self.o.threads or os.cpu_count()), x.numpy()
        return lambda: lite(pixels)

    def train_step(self, model, batch: int, size: int) -> Callable[[], object]:
        tf, keras = self.tf, self.keras
        x = self.images(batch, size)
        y = keras.ops.convert_to_tensor(self.rng.integers(0, self.o.num_classes, batch))
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if self.o.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if self.jax:
            return jax_train_step(model, optimizer, loss_fn, x, y)
        variables = model.trainable_variables

        @tf.function(jit_compile=self.jit)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
                scaled = optimizer.scale_loss(loss)
            optimizer.apply(tape.gradient(scaled, variables), variables)
            return loss

        return lambda: step(x, y).numpy()


def jax_infer_step(model, x) -> Callable[[], object]:
    """One jitted stateless forward pass; `np.asarray` waits for the device."""
    import jax

    forward = jax.jit(lambda tv, ntv, t: model.stateless_call(tv, ntv, t, training=False)[0])
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    return lambda: np.asarray(forward(tv, ntv, x))


def jax_train_step(model, optimizer, loss_fn, x, y) -> Callable[[], object]:
    """Forward, backward and optimizer update as one jitted function of the state (Keras 3's JAX
    loop), the state donated so XLA updates it in place; loss scaling included for float16.
    It trains copies of the variables: the model itself is left as it was."""
    import jax
    import keras

    optimizer.build(model.trainable_variables)

    def scaled_loss(tv, ntv, ov, x, y):
        logits, ntv = model.stateless_call(tv, ntv, x, training=True)
        loss = loss_fn(y, logits)
        with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, ov))):
            scaled = optimizer.scale_loss(loss)  # reads the loss scale from `ov` (no-op unless float16)
        return scaled, (loss, ntv)

    gradients = jax.value_and_grad(scaled_loss, has_aux=True)

    @partial(jax.jit, donate_argnums=0)
    def step(state, x, y):
        tv, ntv, ov = state
        (_, (loss, ntv)), grads = gradients(tv, ntv, ov, x, y)
        tv, ov = optimizer.stateless_apply(ov, grads, tv)
        return loss, (tv, ntv, ov)

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    # donation consumes the buffers it is given: start from copies, never from the model's own arrays
    state = jax.tree_util.tree_map(lambda a: a.copy(), state)

    def run() -> float:
        nonlocal state
        loss, state = step(state, x, y)
        return float(loss)

    return run


def _row(o: BenchOptions, model: str, impl: str, runtime: str, graph: str, jit: bool, batch: int, size: int,
         macs: int, params: int, versions: dict) -> dict:
    return {"model": model, "impl": impl, "runtime": runtime, "graph": graph, "precision": o.precision,
            "jit_compile": "on" if jit else "off", "threads": o.threads or os.cpu_count(),
            "infer_batch_size": batch, "infer_img_size": size, "infer_gmacs": round(macs / 1e9, 3),
            "param_count": round(params / 1e6, 3), "device": device_name(), "peak_gflops": o.peak_gflops,
            "onednn": None if "jax" in versions else os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            "versions": json.dumps(versions, sort_keys=True), "command": o.command}


def _fill(row: dict, prefix: str, timing: dict[str, float], batch: int, size: int, rss: float | None,
          peak_gflops: float | None) -> None:
    row[f"{prefix}_samples_per_sec"] = round(batch / timing["step_time"] * 1e3, 2)
    for key, value in timing.items():
        row[f"{prefix}_{key}"] = round(value, 2)
    row[f"{prefix}_batch_size"], row[f"{prefix}_img_size"] = batch, size
    row[f"{prefix}_peak_rss_mb"] = round(rss, 1) if rss else None
    if prefix == "infer" and peak_gflops and row["runtime"] != "tflite-int8":  # the peak is float32's
        achieved = 2 * row["infer_gmacs"] * row["infer_samples_per_sec"]
        row["infer_pct_of_peak"] = round(100 * achieved / peak_gflops, 1)


def run(options: BenchOptions, progress: Callable[[str], None] = print) -> list[dict]:
    """Every (model, implementation, runtime, image size, batch size) as one row."""
    options.check()
    import keras

    from keras_models.cost import count_macs, count_params

    versions = {"keras": keras.__version__, "python": platform.python_version()}
    if keras.backend.backend() == "jax":
        import jax

        versions["jax"] = jax.__version__
    else:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
        if options.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(options.threads)
            except RuntimeError:
                pass  # the runtime already started (in-process use): keep its setting
        for gpu in tf.config.list_physical_devices("GPU"):  # leave GPU memory to timm's child process
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass
    bench = Bench(options)
    rows = []
    infer = options.bench in ("infer", "both")
    train = options.bench in ("train", "both")
    impls = ["keras_models"] + [p for p in options.compare if p == "keras.applications"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in options.models:
            for size in options.img_sizes:
                for impl in impls:
                    model = bench.build(name, impl, size)
                    macs, params = count_macs(model), count_params(model, trainable_only=True)
                    for runtime in options.runtimes:
                        graph = options.graph if impl == "keras_models" and runtime == "keras" else "plain"
                        for batch in options.batch_sizes:
                            row = _row(options, name, impl, runtime, graph, bench.jit, batch, size, macs, params,
                                       versions)
                            label = f"{impl} {name} {runtime} {size}px batch {batch}"
                            if infer:
                                progress(f"infer  {label}")
                                step = bench.infer_step(model, runtime, impl, batch, size, Path(tmp))
                                with PeakRSS() as rss:
                                    timing = timed(step, options.warmup, options.iters)
                                _fill(row, "infer", timing, batch, size, rss.mb, options.peak_gflops)
                            if train and runtime == "keras":
                                progress(f"train  {label}")
                                step = bench.train_step(model, batch, size)
                                with PeakRSS() as rss:
                                    timing = timed(step, options.warmup, options.iters)
                                _fill(row, "train", timing, batch, size, rss.mb, None)
                            rows.append(row)
                    keras.backend.clear_session()
                if "timm" in options.compare:
                    rows += timm_rows(options, name, size, macs, progress)
    return rows


def timm_rows(options: BenchOptions, name: str, size: int, macs: int, progress: Callable[[str], None]) -> list[dict]:
    """The timm (PyTorch) twin, timed the same way in a child process that never imports TensorFlow:
    on the GPU when our backend runs on one (channels-last, as timm benchmarks GPUs), in the same
    precision (torch autocast for the mixed policies)."""
    from keras_models.backend import accelerator_present

    device = "cuda" if accelerator_present() else "cpu"
    progress(f"timm   {name} {size}px (PyTorch on {device}, child process)")
    job = {"model": name, "img_size": size, "batch_sizes": options.batch_sizes, "bench": options.bench,
           "threads": options.threads or os.cpu_count(), "warmup": options.warmup, "iters": options.iters,
           "num_classes": options.num_classes, "device": device, "precision": options.precision}
    done = subprocess.run([sys.executable, "-m", "benchmarks.timm_child", json.dumps(job)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise BenchmarkError(f"timm comparison failed: {lines[-1] if lines else 'no output'}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    for entry in result["rows"]:
        batch = entry["batch_size"]
        row = _row(options, name, "timm", "pytorch", "eager", False, batch, size, macs, entry["params"],
                   result["versions"])
        row["device"] = result["device"]
        for prefix in ("infer", "train"):
            if prefix in entry:
                _fill(row, prefix, entry[prefix], batch, size, entry.get(f"{prefix}_rss"),
                      options.peak_gflops)
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    """Append-free, atomic: the CSV holds exactly this run's rows."""
    from keras_models.files import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def ratios(rows: list[dict]) -> list[str]:
    """Ours vs each peer at the same model, runtime, size and batch (timm's PyTorch against our
    keras runtime), and int8 vs float32 TFLite: the numbers the goals are stated in."""
    lines = []

    def key(r: dict, runtime: str | None = None) -> tuple:
        return r["model"], runtime or r["runtime"], r["infer_img_size"], r["infer_batch_size"]

    ours = {key(r): r for r in rows if r["impl"] == "keras_models"}
    for prefix in ("infer", "train"):
        column = f"{prefix}_samples_per_sec"
        for r in rows:
            runtime = "keras" if r["runtime"] == "pytorch" else r["runtime"]
            mine = ours.get(key(r, runtime))
            if r["impl"] != "keras_models" and mine and r.get(column) and mine.get(column):
                lines.append(f"{prefix} {r['model']} {runtime} {r['infer_img_size']}px batch {r['infer_batch_size']}: "
                             f"{mine[column]:.1f} vs {r['impl']} {r[column]:.1f} img/s = "
                             f"{mine[column] / r[column]:.2f}x")
    for r in rows:
        base = ours.get(key(r, "tflite"))
        if r["impl"] == "keras_models" and r["runtime"] == "tflite-int8" and base:
            lines.append(f"infer {r['model']} {r['infer_img_size']}px batch {r['infer_batch_size']}: tflite int8 "
                         f"{r['infer_samples_per_sec']:.1f} vs float32 {base['infer_samples_per_sec']:.1f} img/s = "
                         f"{r['infer_samples_per_sec'] / base['infer_samples_per_sec']:.2f}x")
    return lines


def read_csv(path: Path) -> list[dict]:
    """Rows of a results CSV with numbers as numbers (to re-plot or compare runs)."""
    def value(text: str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text or None

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot(rows: list[dict], path: Path, title: str = "") -> Path:
    """Images/s per configuration, and how it scales with batch size, resolution and memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_models.files import atomic_output

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        for prefix in ("infer", "train"):
            if r.get(f"{prefix}_samples_per_sec"):
                series.setdefault((r["impl"], r["model"], r["runtime"], prefix), []).append(r)

    ax = axes[0][0]
    labels, values = [], []
    for (impl, model, runtime, prefix), rs in series.items():
        for r in rs:
            labels.append(f"{prefix} {impl}\n{model} {runtime} b{r['infer_batch_size']} {r['infer_img_size']}px")
            values.append(r[f"{prefix}_samples_per_sec"])
    ax.barh(range(len(values)), values, color="tab:blue")
    ax.set_yticks(range(len(values)), labels, fontsize=6)
    ax.set_xlabel("images / s")
    ax.set_title("throughput")
    # one line per series at each value of the other axis (batch lines at one size, and so on)
    for ax, key, other, xlabel in ((axes[0][1], "infer_batch_size", "infer_img_size", "batch size"),
                                   (axes[1][0], "infer_img_size", "infer_batch_size", "image size (px)")):
        for (impl, model, runtime, prefix), rs in series.items():
            for fixed in sorted({r[other] for r in rs}):
                points = sorted((r[key], r[f"{prefix}_samples_per_sec"]) for r in rs if r[other] == fixed)
                if len(points) > 1:
                    unit = "px" if other == "infer_img_size" else " batch"
                    ax.plot(*zip(*points), marker="o", label=f"{prefix} {impl} {model} {runtime} {fixed}{unit}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("images / s")
        ax.set_title(f"images/s vs {xlabel}")
        if ax.lines:
            ax.legend(fontsize=6)
        else:  # one value per series: no line to draw, and an empty grid reads as a failure
            ax.text(0.5, 0.5, f"one {xlabel} per configuration:\nsee throughput", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
            ax.set_xticks([])
            ax.set_yticks([])
    ax = axes[1][1]
    for (impl, model, runtime, prefix), rs in series.items():
        for size in sorted({r["infer_img_size"] for r in rs}):
            points = sorted((r["infer_batch_size"], r[f"{prefix}_peak_rss_mb"]) for r in rs
                            if r["infer_img_size"] == size and r.get(f"{prefix}_peak_rss_mb"))
            if points:
                ax.plot(*zip(*points), marker="o", label=f"{prefix} {impl} {model} {runtime} {size}px")
    ax.set_xlabel("batch size")
    ax.set_ylabel("process peak RSS (MB)")
    ax.set_title("peak memory (process high-water mark while timing)")
    if ax.lines:
        ax.legend(fontsize=6)
    fig.suptitle("\n".join(textwrap.wrap(title, 170, break_on_hyphens=False)), fontsize=9)  # the command, whole
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
