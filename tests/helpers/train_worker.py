"""Run one training process for the distribution tests: `python train_worker.py CONFIG_JSON WEIGHTS_NPZ`.

`LOGICAL_CPUS=2` splits the CPU into two logical devices first (for a 2-replica MirroredStrategy).
Saves the final weights of every worker, so the test can compare them across processes.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

if os.environ.get("LOGICAL_CPUS"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    n = int(os.environ["LOGICAL_CPUS"])
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)

from training.config import TrainConfig  # noqa: E402
from training.trainer import Trainer  # noqa: E402

trainer = Trainer(TrainConfig.from_dict(json.loads(sys.argv[1])), verbose=False)
summary = trainer.run()
np.savez(sys.argv[2], **{w.path.replace("/", "__"): w.numpy() for w in trainer.model.weights})
print(json.dumps({k: v for k, v in summary.items() if isinstance(v, (int, float, str, type(None)))}))
