"""Deployment for real: a trained run exported to every format, its SavedModel served over REST and
gRPC on 127.0.0.1 from a fresh process, its TFLite models run with ai_edge_litert."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import PHOTOS, cli, randomize, run_cli

FORMATS = ["--formats", "saved_model,tflite,onnx", "--tflite-quant", "float32,float16,dynamic,int8"]


@pytest.fixture(scope="module")
def run(digits_run) -> Path:
    return digits_run


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> tuple[Path, str]:
    repo = tmp_path_factory.mktemp("repo") / "saved_models"
    r = run_cli("export", "--weights", str(run / "best.weights.h5"), *FORMATS, "--eval-images", "120",
                "--calibration-images", "60", "--out", str(repo))
    assert r.returncode == 0, r.stderr
    return repo, r.stdout


@pytest.mark.slow
def test_export_layout_report_and_metadata(run, exported):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from keras_models.export.metadata import read_metadata

    repo, stdout = exported
    version = repo / "rexnet_100" / "1"
    for name in ("saved_model.pb", "variables", "assets/labels.txt", "assets.extra/tf_serving_warmup_requests",
                 "model_card.json", "export_report.md", "rexnet_100.onnx", "rexnet_100_float32.tflite",
                 "rexnet_100_float16.tflite", "rexnet_100_dynamic.tflite", "rexnet_100_int8.tflite"):
        assert (version / name).exists(), name
    assert not [p for p in (repo / "rexnet_100").iterdir() if p.name.startswith(".")], "staging left behind"
    labels = (run / "labels.txt").read_text().splitlines()
    assert (version / "assets" / "labels.txt").read_text().splitlines() == labels

    config = text_format.Parse((repo / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert [(c.name, c.base_path) for c in config.model_config_list.config] == [("rexnet_100", "/models/rexnet_100")]

    card = json.loads((version / "model_card.json").read_text())
    assert card["model"] == "rexnet_100" and card["num_classes"] == 10 and card["input"]["image_size"] == 32
    assert card["training"]["epochs"] == 4 and card["data"] == "digits"
    export = card["export"]
    assert export["tflite float32"]["max_abs_diff"] <= 1e-4 and export["tflite float32"]["logit_error"] <= 1e-3
    assert export["saved_model"]["max_abs_diff"] <= 1e-4 and export["saved_model"]["logit_error"] <= 1e-3
    assert export["onnx"]["max_abs_diff"] <= 1e-4 and export["onnx"]["logit_error"] <= 1e-3
    keras_acc = export["keras"]["accuracy"]
    assert keras_acc > 50, "4 epochs on digits should be well above chance"
    for fmt in ("saved_model", "onnx", "tflite float32", "tflite float16"):
        assert export[fmt]["accuracy"] == pytest.approx(keras_acc, abs=0.6), fmt
    # int8 is calibrated on real training images: it must stay close to float (the exact gap is reported).
    assert export["tflite int8"]["agreement"] >= 90
    assert export["tflite int8"]["size_bytes"] < export["tflite float32"]["size_bytes"] / 3

    report = (version / "export_report.md").read_text()
    assert report.strip() in stdout  # printed and saved
    for fmt in ("keras", "saved_model", "onnx", "tflite float32", "tflite float16", "tflite dynamic", "tflite int8"):
        assert f"| {fmt} |" in report

    # Android: labels and normalisation inside the file, labels.txt a zip member as tflite-support packs it.
    data = (version / "rexnet_100_int8.tflite").read_bytes()
    meta = read_metadata(data)
    assert meta["labels"] == labels and meta["image_size"] == (32, 32)
    assert meta["mean"] == [0, 0, 0] and meta["std"] == [1, 1, 1] and meta["min_parser_version"] == "1.0.0"
    with zipfile.ZipFile(version / "rexnet_100_int8.tflite") as zf:
        assert zf.namelist() == ["labels.txt"]


@pytest.mark.slow
def test_verify_serves_rest_and_grpc_from_a_fresh_process(exported, capsys):
    repo, _ = exported
    r = cli(capsys, "verify", str(repo / "rexnet_100" / "1"))  # it starts the serving process itself
    assert r.returncode == 0, r.stdout + r.stderr
    for check in ("signatures", "saved_model_cli show", "warm-up replay", "REST :predict on 127.0.0.1",
                  "gRPC PredictionService on 127.0.0.1", "keras_models not imported", "saved_model vs Keras",
                  "rexnet_100_int8.tflite builtin ops only", "rexnet_100_float32.tflite vs Keras",
                  "rexnet_100.onnx vs Keras"):
        assert f"ok   saved_model {check}" in r.stdout or f"ok   {check}" in r.stdout, check
    assert "corrupt element -> 400 naming it" in r.stdout
    assert "FAIL" not in r.stdout


@pytest.mark.slow
def test_verify_catches_a_wrong_model(exported, tmp_path, capsys):
    """A float32 file that is really the dynamic-range one must fail the 1e-4 check."""
    repo, _ = exported
    version = repo / "rexnet_100" / "1"
    broken = tmp_path / "broken"
    broken.mkdir()
    card = json.loads((version / "model_card.json").read_text())
    card["export"] = {k: v for k, v in card["export"].items() if k in ("keras", "tflite float32")}
    (broken / "model_card.json").write_text(json.dumps(card))  # a TFLite-only version
    shutil.copy(version / "rexnet_100_dynamic.tflite", broken / "rexnet_100_float32.tflite")
    r = cli(capsys, "verify", str(broken))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "keras-models: error: 1 of 3 checks failed: rexnet_100_float32.tflite vs Keras"]


@pytest.mark.slow
def test_verify_fails_when_listed_files_are_gone_or_damaged(exported, tmp_path, capsys):
    """Nothing to check is a failure; so is every file the model card lists that is missing or broken."""
    from keras_models.cli import main

    repo, _ = exported
    empty = tmp_path / "empty"
    shutil.copytree(repo / "rexnet_100" / "1", empty)
    for path in [empty / "saved_model.pb", *empty.glob("*.tflite"), *empty.glob("*.onnx")]:
        path.unlink()
    shutil.rmtree(empty / "variables")
    assert main(["verify", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "6 of 6 checks failed" in err[0] and "all 0" not in err[0]
    assert all(f"{fmt} files" in err[0] for fmt in ("saved_model", "onnx", "tflite float32", "tflite int8"))

    lite_only = tmp_path / "lite_only"
    lite_only.mkdir()
    card = json.loads((empty / "model_card.json").read_text())
    card["export"] = {k: v for k, v in card["export"].items() if k in ("keras", "tflite float32")}
    (lite_only / "model_card.json").write_text(json.dumps(card))
    data = (repo / "rexnet_100" / "1" / "rexnet_100_float32.tflite").read_bytes()
    (lite_only / "rexnet_100_float32.tflite").write_bytes(data[: len(data) // 3])  # truncated
    assert main(["verify", str(lite_only)]) == 2
    err = capsys.readouterr()
    assert "FAIL rexnet_100_float32.tflite: cannot be loaded" in err.out
    assert err.err.strip().splitlines() == ["keras-models: error: 1 of 1 checks failed: rexnet_100_float32.tflite"]

    (lite_only / "model_card.json").write_text('{"model": "rexnet_100", "inp')
    assert main(["verify", str(lite_only)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"keras-models: error: {lite_only / 'model_card.json'} is unreadable (JSONDecodeError): "
                   "the export is damaged; export again"]


@pytest.mark.slow
def test_python_api_versions_and_serving_signatures(run, tmp_path):
    import tensorflow as tf

    import keras_models as km

    export = km.export  # the documented spelling: km.export.saved_model(...)
    model = km.create_model("rexnet_100", weights=str(run / "best.weights.h5"), num_classes=10,
                            input_shape=(32, 32, 3))
    labels = [f"digit {i}" for i in range(10)]
    first = export.saved_model(model, tmp_path, "digits", labels=labels, crop_pct=1.0)
    second = export.saved_model(model, tmp_path, "digits", labels=labels, crop_pct=1.0)
    assert (first.name, second.name) == ("1", "2")
    assert 'name: "digits"' in (tmp_path / "models.config").read_text()

    loaded = tf.saved_model.load(str(second))
    # Served as the inference graph: BatchNorm folded away (fewer variables, no BN op anywhere).
    assert len(loaded.model_variables) == len(km.inference_model(model).weights) < len(model.weights)
    graph = loaded.signatures["serve_images"].graph.as_graph_def()
    ops = {n.op for f in graph.library.function for n in f.node_def} | {n.op for n in graph.node}
    assert "Conv2D" in ops and not [op for op in ops if "BatchNorm" in op]
    photo = (PHOTOS / "chelsea.jpg").read_bytes()  # any size: decoded, resized, cropped in-graph
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([photo, photo]))
    assert out["probabilities"].shape == (2, 10) and out["labels"].shape == (2, 5)
    assert out["labels"].numpy()[0, 0].decode() == labels[int(out["classes"][0, 0])]
    pixels = tf.io.decode_jpeg(photo)[None]
    same = loaded.signatures["serve_images_uint8"](images=pixels)["probabilities"]
    np.testing.assert_allclose(same.numpy()[0], out["probabilities"].numpy()[0], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes element\] \[1\]"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([photo, b"<html>not an image</html>"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes element\] \[0\]"):  # #34: every one bad
        loaded.signatures["serving_default"](image_bytes=tf.constant([b"<html>", b"not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_bytes is empty"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([], tf.string))
    assert loaded.signatures["serving_default"](image_bytes=tf.constant([photo]))["probabilities"].shape == (1, 10)


@pytest.mark.slow
def test_pruned_kernels_are_stored_sparse_and_run_the_same(tmp_path):
    """Zeros from pruning shrink the .tflite itself (DENSIFY expands them), not only its gzip."""
    import keras_models as km
    from keras_models.export import LiteModel, tflite

    model = km.create_model("rexnet_100", input_shape=(32, 32, 3), num_classes=10)
    randomize(model)
    dense = 4 * model.count_params()  # float32 bytes, as a dense .tflite stores them
    rng = np.random.default_rng(0)
    for layer in model.layers:  # 75% of the 1x1 convs' input channels pruned
        if layer.name.endswith(("expand_conv", "project_conv", "top_conv")):
            kernel = layer.kernel.numpy()
            kernel[:, :, rng.random(kernel.shape[2]) < 0.75] = 0
            layer.kernel.assign(kernel)
    runner = LiteModel(tflite(model, tmp_path / "pruned.tflite"))
    assert (tmp_path / "pruned.tflite").stat().st_size < 0.6 * dense  # 0.56 (1.0 stored dense)
    assert "DENSIFY" in {op["op_name"] for op in runner.interpreter._get_ops_details()}
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(runner(x), np.asarray(model(x, training=False)), atol=1e-5)


def _flex_model():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Resizing(8, 8, antialias=True)(inputs)  # ScaleAndTranslate: not a TFLite builtin
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="flexy")


@pytest.mark.slow
def test_flex_ops_fail_loudly_and_nothing_is_published(tmp_path):
    from keras_models.export import ExportError, ExportPlan, export_model, tflite
    from keras_models.export.measure import prepare
    from keras_models.preprocessing import EvalTransform

    with pytest.raises(ExportError, match="outside the TFLite builtins \\(ScaleAndTranslate\\)"):
        tflite(_flex_model(), tmp_path / "flexy.tflite")
    assert not list(tmp_path.iterdir())

    images = prepare([(PHOTOS / "coffee.jpg").read_bytes()], EvalTransform(image_size=16, crop_pct=1.0))
    plan = ExportPlan(name="flexy", labels=["a", "b", "c"], crop_pct=1.0, interpolation="bilinear")
    with pytest.raises(ExportError, match="ScaleAndTranslate"):
        export_model(_flex_model(), tmp_path / "repo", plan, images, verbose=False)
    assert not (tmp_path / "repo" / "flexy").exists()  # no version, no staging, no empty model folder


def test_cli_errors_are_one_line(tmp_path, capsys):
    from keras_models.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    cases = [
        (["export", "--weights", str(tmp_path / "missing.weights.h5")], "weights file .* does not exist"),
        (["export", "--model", "rexnet_100", "--weights", "none", "--formats", "pdf"], "unknown format pdf"),
        (["export", "--model", "rexnet_100", "--weights", "none", "--labels", str(labels), "--formats", "tflite",
          "--tflite-quant", "int8"], "int8 needs calibration images"),
        (["export", "--model", "rexnet_100", "--weights", "none", "--labels", str(tmp_path / "nope.txt")],
         "labels file .* does not exist"),
        (["verify", str(tmp_path)], "is not a keras-models export"),
    ]
    for argv, pattern in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(pattern, err[0]), (argv, err)


def test_a_run_exported_with_too_few_labels_is_refused(run, tmp_path, capsys):
    from keras_models.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    assert main(["export", "--weights", str(run / "best.weights.h5"), "--labels", str(labels),
                 "--out", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"keras-models: error: {labels} lists 2 classes but the weights have 10: one class name per line, "
                   "in training order"]
    assert not (tmp_path / "repo").exists()


@pytest.mark.slow
def test_predict_uses_a_trained_run_as_it_was_trained(run, tmp_path, capsys):
    """Model, class count, size, crop and labels come from the run beside the weights (it failed with
    "A total of 1 objects could not be loaded" before)."""
    from keras_models.cli import main

    for name in ("best.weights.h5", "config.yaml"):
        shutil.copy(run / name, tmp_path / name)
    (tmp_path / "labels.txt").write_text("".join(f"digit {i}\n" for i in range(10)))
    assert main(["predict", "--weights", str(tmp_path / "best.weights.h5"), str(PHOTOS / "coffee.jpg")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("coffee.jpg") and len(out) == 6 and all("digit " in line for line in out[1:])


@pytest.mark.slow
def test_serving_refuses_a_decompression_bomb_naming_the_element(run, tmp_path):
    """The header is read in-graph: a 16000 x 16000 PNG (a few KB) is refused before it is decoded."""
    import io

    import tensorflow as tf
    from PIL import Image

    import keras_models as km

    model = km.create_model("rexnet_100", weights=str(run / "best.weights.h5"), num_classes=10,
                            input_shape=(32, 32, 3))
    version = km.export.saved_model(model, tmp_path, "digits", crop_pct=1.0)
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    bomb = io.BytesIO()
    Image.new("1", (16000, 16000)).save(bomb, "PNG")
    photo = (PHOTOS / "chelsea.jpg").read_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes element\] \[1\].*at most 89,478,485"):
        serve(image_bytes=tf.constant([photo, bomb.getvalue()]))
    assert serve(image_bytes=tf.constant([photo]))["probabilities"].shape == (1, 10)
