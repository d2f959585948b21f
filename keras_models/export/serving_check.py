"""Check a SavedModel version the way TF Serving and its clients see it, in a fresh process.

Run as a script (`python serving_check.py VERSION_DIR IMAGES_DIR OUT_DIR`), never imported by
keras_models: it must prove the export stands alone, so it imports TensorFlow and the
tensorflow-serving-api protos only, and fails if keras_models got imported anyway. It checks:
- the signatures against the model card's contract, and `saved_model_cli show` agreeing;
- every warm-up record replays;
- REST: a real HTTP server on 127.0.0.1 speaking TF Serving's `:predict` JSON (row format,
  `{"b64": ...}`), and gRPC: a PredictionService on 127.0.0.1 called through its stub;
- a corrupt image in a batch is an InvalidArgument naming the element, and the next request works.
Writes `checks.json` (name, ok, detail) and `outputs.npz` (probabilities per image) to OUT_DIR.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PROTO_DTYPES = {"string": "STRING", "float32": "FLOAT", "uint8": "UINT8", "int64": "INT64"}  # as DT_* names


class Checks:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.rows.append({"name": name, "ok": bool(ok), "detail": detail})
        return ok

    def run(self, name: str, fn) -> None:
        try:
            detail = fn()
            self.add(name, True, detail or "")
        except Exception as e:  # a failed check is reported, the others still run
            self.add(name, False, f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}")


def contract(card: dict) -> dict:
    """signature -> ({input: (dtype, shape)}, {output: (dtype, shape)}) as the export promises."""
    c = card["num_classes"]
    k = min(card.get("top_k", 5), c)
    outputs = {"probabilities": ("float32", [None, c]), "classes": ("int64", [None, k]),
               "scores": ("float32", [None, k]), "labels": ("string", [None, k])}
    return {"serving_default": ({"image_bytes": ("string", [None])}, outputs),
            "serve_images": ({"images": ("float32", [None, None, None, 3])}, outputs),
            "serve_images_uint8": ({"images": ("uint8", [None, None, None, 3])}, outputs)}


def check_signatures(loaded, card: dict) -> str:
    for name, (inputs, outputs) in contract(card).items():
        fn = loaded.signatures.get(name)
        if fn is None:
            raise AssertionError(f"signature {name} is missing (have {sorted(loaded.signatures)})")
        got_in = {k: (v.dtype.name, v.shape.as_list()) for k, v in fn.structured_input_signature[1].items()}
        got_out = {k: (v.dtype.name, v.shape.as_list()) for k, v in fn.structured_outputs.items()}
        if got_in != inputs or got_out != outputs:
            raise AssertionError(f"{name}: inputs {got_in} outputs {got_out}, expected {inputs} {outputs}")
    return f"{len(loaded.signatures)} signatures as the model card says"


def check_saved_model_cli(version_dir: Path, card: dict) -> str:
    cli = Path(sys.executable).with_name("saved_model_cli")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    text = subprocess.run([*cmd, "show", "--dir", str(version_dir), "--all"], capture_output=True, text=True,
                          check=True).stdout
    blocks = re.split(r"signature_def\['(\w+)'\]:", text)[1:]
    shown = {}
    for name, body in zip(blocks[::2], blocks[1::2]):
        ins, _, outs = body.partition("The given SavedModel SignatureDef contains the following output(s):")
        keys = lambda part: dict(re.findall(r"\['(\w+)'\] tensor_info:\s*dtype: DT_(\w+)", part))  # noqa: E731
        method = re.search(r"Method name is: (\S+)", body)
        shown[name] = (keys(ins), keys(outs), method.group(1) if method else None)
    for name, (inputs, outputs) in contract(card).items():
        if name not in shown:
            raise AssertionError(f"saved_model_cli does not show {name}")
        ins, outs, method = shown[name]
        want_in = {k: PROTO_DTYPES[v[0]] for k, v in inputs.items()}
        want_out = {k: PROTO_DTYPES[v[0]] for k, v in outputs.items()}
        if ins != want_in or outs != want_out or method != "tensorflow/serving/predict":
            raise AssertionError(f"saved_model_cli shows {name} as {ins} -> {outs} ({method})")
    return "signatures, dtypes and method tensorflow/serving/predict agree"


def replay_warmup(loaded, version_dir: Path) -> str:
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = fn(**inputs)
        batch = next(iter(inputs.values())).shape[0]
        if out["probabilities"].shape[0] != batch:
            raise AssertionError(f"warm-up record {count}: {out['probabilities'].shape[0]} rows for {batch} inputs")
        count += 1
    if not count or count > 1000:
        raise AssertionError(f"{count} warm-up records (TF Serving wants 1-1000)")
    return f"{count} PredictionLog records replayed"


# --- REST: TF Serving's JSON API, served for real on 127.0.0.1 --------------------------------
def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def rest_predict(loaded, body: dict) -> dict:
    """`POST /v1/models/NAME:predict` semantics: `instances` (row) or `inputs` (columnar)."""
    fn = loaded.signatures[body.get("signature_name", "serving_default")]
    specs = fn.structured_input_signature[1]
    if ("instances" in body) == ("inputs" in body):
        raise ValueError("JSON body needs exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        rows = body["instances"]
        if len(specs) == 1:
            key = next(iter(specs))
            rows = [r[key] if isinstance(r, dict) and key in r else r for r in rows]
            columns = {key: rows}
        else:
            columns = {k: [r[k] for r in rows] for k in specs}
    else:
        inputs = body["inputs"]
        columns = inputs if isinstance(inputs, dict) else {next(iter(specs)): inputs}
    tensors = {k: tf.constant(_from_json(v), dtype=specs[k].dtype) for k, v in columns.items()}
    out = {k: v.numpy() for k, v in fn(**tensors).items()}
    if "instances" in body:
        n = len(next(iter(out.values())))
        return {"predictions": [{k: _to_json(v[i]) for k, v in out.items()} for i in range(n)]}
    return {"outputs": {k: _to_json(v) for k, v in out.items()}}


def start_rest_server(loaded, model_name: str) -> ThreadingHTTPServer:
    pattern = re.compile(rf"^/v1/models/{re.escape(model_name)}(/versions/\d+)?:predict$")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            if not pattern.match(self.path):
                return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._reply(200, rest_predict(loaded, body))
            except tf.errors.InvalidArgumentError as e:
                self._reply(400, {"error": e.message})
            except (ValueError, KeyError) as e:
                self._reply(400, {"error": str(e)})

        def _reply(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_rest(loaded, name: str, images: list[bytes], expected: np.ndarray, corrupt: bytes) -> str:
    server = start_rest_server(loaded, name)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/models/{name}:predict"
    try:
        code, reply = post(url, {"instances": [{"b64": base64.b64encode(b).decode()} for b in images]})
        if code != 200:
            raise AssertionError(f"HTTP {code}: {reply}")
        got = np.array([row["probabilities"] for row in reply["predictions"]], np.float32)
        if got.shape != expected.shape or np.abs(got - expected).max() > 1e-5:
            raise AssertionError("REST probabilities differ from the signature's")
        if any(row["labels"][0] == "" for row in reply["predictions"]):
            raise AssertionError("REST reply has empty labels")
        pixels = tf.io.decode_image(images[0], channels=3, expand_animations=False).numpy()
        code, reply = post(url.replace(f"/{name}:", f"/{name}/versions/1:"),
                           {"signature_name": "serve_images_uint8", "instances": [pixels.tolist()]})
        if code != 200 or len(reply["predictions"]) != 1:
            raise AssertionError(f"serve_images_uint8 over REST: HTTP {code}")
        bad = [{"b64": base64.b64encode(b).decode()} for b in (images[0], corrupt)]
        code, reply = post(url, {"instances": bad})
        if code != 400 or "image_bytes element] [1]" not in reply.get("error", ""):
            raise AssertionError(f"corrupt image gave HTTP {code} {str(reply)[:200]}")
        code, _ = post(url, {"instances": [{"b64": base64.b64encode(images[0]).decode()}]})
        if code != 200:
            raise AssertionError(f"the request after a corrupt one failed: HTTP {code}")
    finally:
        server.shutdown()
    return f"{len(images)} b64 images and a uint8 image over HTTP; a corrupt element -> 400 naming it"


# --- gRPC: PredictionService on 127.0.0.1, called through the tensorflow-serving-api stub ----
def check_grpc(loaded, name: str, images: list[bytes], expected: np.ndarray, corrupt: bytes) -> str:
    import grpc
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            if request.model_spec.name != name:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request.model_spec.name}")
            signature = request.model_spec.signature_name or "serving_default"
            try:
                out = loaded.signatures[signature](**{k: tf.constant(tf.make_ndarray(v))
                                                      for k, v in request.inputs.items()})
            except tf.errors.InvalidArgumentError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
            response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(
                name=name, signature_name=signature))
            response.model_spec.version.value = 1
            for key, value in out.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def request(batch):
                req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                    name=name, signature_name="serving_default"))
                req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
                return req

            reply = stub.Predict(request(images), timeout=120)
            got = tf.make_ndarray(reply.outputs["probabilities"])
            if np.abs(got - expected).max() > 1e-6:
                raise AssertionError("gRPC probabilities differ from the signature's")
            labels = tf.make_ndarray(reply.outputs["labels"])
            try:
                stub.Predict(request([images[0], corrupt]), timeout=120)
                raise AssertionError("a corrupt image was accepted")
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.INVALID_ARGUMENT or "image_bytes element] [1]" not in e.details():
                    raise AssertionError(f"corrupt image gave {e.code()} {e.details()[:200]}") from None
            stub.Predict(request(images[:1]), timeout=120)
    finally:
        server.stop(0)
    return f"Predict over gRPC matches; top-1 labels {[x.decode() for x in labels[:3, 0]]}; corrupt -> INVALID_ARGUMENT"


def main(version_dir: Path, images_dir: Path, out_dir: Path) -> int:
    card = json.loads((version_dir / "model_card.json").read_text())
    name = card["model"]
    images = [p.read_bytes() for p in sorted(images_dir.iterdir())]
    corrupt = images[0][: len(images[0]) // 2]  # a truncated upload
    checks = Checks()
    loaded = tf.saved_model.load(str(version_dir))
    fn = loaded.signatures["serving_default"]
    expected = fn(image_bytes=tf.constant(images))["probabilities"].numpy()
    uint8 = [tf.io.decode_image(b, channels=3, expand_animations=False) for b in images]
    via_pixels = np.concatenate([loaded.signatures["serve_images_uint8"](images=x[None])["probabilities"].numpy()
                                 for x in uint8])
    checks.run("signatures", lambda: check_signatures(loaded, card))
    checks.run("saved_model_cli show", lambda: check_saved_model_cli(version_dir, card))
    checks.run("warm-up replay", lambda: replay_warmup(loaded, version_dir))

    def labels_asset():
        labels = (version_dir / "assets" / "labels.txt").read_text().splitlines()
        out = fn(image_bytes=tf.constant(images))
        top = out["classes"].numpy()[:, 0]
        if not (top == expected.argmax(1)).all():
            raise AssertionError("classes[:, 0] is not the argmax of probabilities")
        if [x.decode() for x in out["labels"].numpy()[:, 0]] != [labels[i] for i in top]:
            raise AssertionError("labels do not come from assets/labels.txt")
        return f"{len(labels)} labels from assets/labels.txt"

    checks.run("labels", labels_asset)

    def same_transform():
        diff = float(np.abs(via_pixels - expected).max())
        if diff > 1e-5:
            raise AssertionError(f"image_bytes and serve_images_uint8 differ by {diff:.2g}")
        return f"image_bytes vs decoded pixels: max |dp| {diff:.1e}"

    checks.run("bytes and pixel signatures agree", same_transform)
    checks.run("REST :predict on 127.0.0.1", lambda: check_rest(loaded, name, images, expected, corrupt))
    checks.run("gRPC PredictionService on 127.0.0.1", lambda: check_grpc(loaded, name, images, expected, corrupt))
    checks.add("keras_models not imported", "keras_models" not in sys.modules)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "outputs.npz", probabilities=expected)
    (out_dir / "checks.json").write_text(json.dumps(checks.rows, indent=2))
    return 0 if all(r["ok"] for r in checks.rows) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
