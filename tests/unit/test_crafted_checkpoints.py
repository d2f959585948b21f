"""A `.pth` whose pickle lies about its tensors is refused in one line naming the tensor, never read
out of bounds (the zip layout of `torch.save`, built here: `archive/data.pkl` + `archive/data/N`)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.torch_files import write_torch_zip

from keras_models.state_dicts import CorruptTensorError, read_checkpoint

FOUR = {"w": np.arange(4, dtype=np.float32)}  # a 4-float storage


@pytest.mark.parametrize("layout, says", [
    ((0, (2**28,), (1,)), "reaches element 268435455 of a storage of 4"),  # segfaulted before
    ((0, (4096,), (1,)), "reaches element 4095 of a storage of 4"),  # returned heap memory before
    ((9, (1,), (1,)), "reaches element 9 of a storage of 4"),  # offset past the storage
    ((0, (4,), (-1,)), "negative or malformed"),
    ((-1, (2,), (1,)), "negative or malformed"),
    ((0, (2, 2), (2,)), "negative or malformed"),  # as many strides as sizes
])
def test_tensor_outside_its_storage_is_refused_naming_it(tmp_path, layout, says):
    path = tmp_path / "crafted.pth"
    write_torch_zip(FOUR, path, layouts={"w": layout})
    with pytest.raises(CorruptTensorError) as e:
        read_checkpoint(path)
    message = str(e.value)
    assert "\n" not in message and "tensor 'w'" in message and says in message and str(path) in message


def test_honest_strided_and_empty_tensors_still_read(tmp_path):
    path = tmp_path / "fine.pth"
    write_torch_zip({"w": np.arange(6, dtype=np.float32), "e": np.zeros(4, np.float32)}, path,
                    layouts={"w": (1, (2, 2), (3, 1)), "e": (0, (0, 5), (5, 1))})
    state = read_checkpoint(path)
    assert state["w"].tolist() == [[1.0, 2.0], [4.0, 5.0]]  # a transposed-style view inside the storage
    assert state["e"].shape == (0, 5)


@pytest.mark.parametrize("value, says", [
    (np.array([1.0, np.nan], np.float32), "holds NaN or infinite values \\(1 of 2\\)"),
    (np.array([np.inf, 1.0], np.float32), "holds NaN or infinite values"),
    (np.array([1, 2], np.int64), "holds int64 values, not floating-point weights"),
])
def test_non_finite_and_integer_weights_are_refused_naming_the_tensor(value, says):
    from keras_models.state_dicts import CheckpointError
    from keras_models.weights import check_values

    with pytest.raises(CheckpointError, match=f"tensor 'stem.conv.weight' {says}"):
        check_values("stem.conv.weight", value)
    check_values("stem.conv.weight", np.ones(3, np.float16))
