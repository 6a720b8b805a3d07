"""`logger_spec`: the TensorBoard event reader of the tests (a TFRecord reader of our own,
not tensorboardX's writer code), the Pareto volume, errors. The fit that writes the logs is in
`test_regressor.py`, where it shares the module's compiled search."""

from __future__ import annotations

import glob
import os
import struct

import numpy as np
import pytest

from symjax_sr import PySRRegressor, TensorBoardLoggerSpec
from symjax_sr._logging import pareto_volume


def events(directory: str):
    """Every event of the TensorBoard files in `directory`: (step, tag, scalar or text)."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):  # TFRecord: length u64, crc u32, payload, crc u32
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            payload = data[pos + 12:pos + 12 + n]
            pos += 12 + n + 4
            event = event_pb2.Event.FromString(payload)
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out.append((event.step, v.tag, v.simple_value))
                elif v.HasField("tensor"):  # the text plugin's tag is `<tag>/text_summary`
                    out.append((event.step, v.tag.removesuffix("/text_summary"),
                                b"".join(v.tensor.string_val).decode()))
    return out


def test_pareto_volume():
    # one point at complexity 1 with loss 10^-2 below the reference 10^0 of a second point
    front = [(1, 1e-2), (10, 1.0)]
    want = (np.log10(10) - 0) * (0 - (-2)) + (np.log10(21) - np.log10(10)) * 2
    assert pareto_volume(front, maxsize=20) == pytest.approx(want)
    better = [(1, 1e-3), (10, 1.0)]
    assert pareto_volume(better, 20) > pareto_volume(front, 20)
    assert pareto_volume([], 20) == 0.0 and pareto_volume([(3, np.inf)], 20) == 0.0


def test_logger_spec_errors():
    rng = np.random.default_rng(0)
    X, y = rng.uniform(-1, 1, (20, 2)), rng.uniform(-1, 1, 20)
    with pytest.raises(TypeError, match="TensorBoardLoggerSpec"):
        PySRRegressor(logger_spec="logs/run", niterations=1).fit(X, y)
    with pytest.raises(ValueError, match="log_interval"):
        TensorBoardLoggerSpec(log_interval=0)
