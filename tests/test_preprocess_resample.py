"""The 20/60 m -> 10 m resampler against onnxruntime's Resize (the independent reference)."""

from __future__ import annotations

import numpy as np
import pytest

from sareval.preprocess.resample import (
    keys_cubic,
    resample_matrix,
    upsample,
    upsample_float32,
)

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def ort_resize(x: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """One-node ONNX Resize graph run by onnxruntime (CPU)."""
    from onnx import TensorProto, helper

    attrs: dict[str, object] = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "cubic":
        attrs |= {"cubic_coeff_a": -0.75, "exclude_outside": 0}
    else:
        attrs["nearest_mode"] = "floor"
    node = helper.make_node("Resize", ["X", "", "", "sizes"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node],
        "resize",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, *x.shape])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, height, width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x[None, None].astype(np.float32)})[0][0, 0]


@pytest.mark.parametrize(("n_in", "n_out"), [(60, 120), (20, 120), (12, 24), (4, 24), (7, 16)])
@pytest.mark.parametrize(("method", "mode"), [("cubic-tf1", "cubic"), ("nearest", "nearest")])
def test_equals_onnxruntime_resize(n_in: int, n_out: int, method: str, mode: str) -> None:
    rng = np.random.default_rng(n_in * 1000 + n_out)
    x = rng.integers(0, 12000, size=(n_in, n_in + 1)).astype(np.float32)
    ours = upsample(x, n_out, n_out + 2, method)
    ref = ort_resize(x, n_out, n_out + 2, mode)
    # onnxruntime computes in float32, we in float64: agree to float32 rounding
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * np.abs(x).max() + 1e-3)
    if method == "nearest":
        np.testing.assert_array_equal(ours, ref)
    # what the store keeps: float32, equal to onnxruntime's float32 Resize to float32 rounding
    stored = upsample_float32(x, n_out, n_out + 2, method)
    np.testing.assert_allclose(stored, ref, rtol=0, atol=2e-6 * np.abs(x).max() + 1e-3)


def test_keys_kernel_hand_values() -> None:
    a = -0.75
    # W(0) = 1, W(1) = 0, W(2) = 0, W(0.5) = (a+2)/8 - (a+3)/4 + 1, W(1.5) = a(27/8 - 45/4 + 12 - 4)
    np.testing.assert_allclose(
        keys_cubic(np.array([0.0, 1.0, 2.0, 0.5, 1.5, -0.5, 3.0])),
        [1, 0, 0, (a + 2) / 8 - (a + 3) / 4 + 1, a * (27 / 8 - 45 / 4 + 12 - 4),
         (a + 2) / 8 - (a + 3) / 4 + 1, 0],
    )  # fmt: skip


def test_properties() -> None:
    # rows of the matrix sum to 1 (constants are kept), integer factors hit source pixels
    for method in ("cubic-tf1", "nearest"):
        m = resample_matrix(20, 120, method)
        np.testing.assert_allclose(m.sum(1), 1.0)
        np.testing.assert_allclose(m[::6], np.eye(20))
    const = np.full((12, 12), 777, dtype=np.uint16)
    np.testing.assert_array_equal(upsample_float32(const, 24, 24), const.repeat(2, 0).repeat(2, 1))
    # nearest keeps values; a band already at the size is unchanged (cast exactly)
    band = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000
    np.testing.assert_array_equal(
        upsample_float32(band, 8, 8, "nearest"), band.repeat(2, 0).repeat(2, 1)
    )
    same = upsample_float32(band, 4, 4)
    assert same.dtype == np.float32 and np.array_equal(same, band)
    # cubic overshoot is kept, not clipped
    edge = np.zeros((6, 6), dtype=np.uint16)
    edge[:, 3:] = 60000
    out = upsample(edge, 12, 12)
    assert out.min() < 0 and out.max() > 65535
    np.testing.assert_allclose(upsample_float32(edge, 12, 12), out, rtol=1e-7, atol=1e-3)
    with pytest.raises(ValueError, match="unknown resampling"):
        resample_matrix(4, 8, "bilinear")
