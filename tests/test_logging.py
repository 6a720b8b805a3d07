"""`logger_spec`: TensorBoard event files written during a fit, read back here with a
TFRecord reader of our own (not tensorboardX's writer code)."""

from __future__ import annotations

import glob
import os
import struct

import numpy as np
import pytest
from test_regressor import SMALL, _data

from symjax_sr import PySRRegressor, TensorBoardLoggerSpec
from symjax_sr._logging import pareto_volume


def _events(directory: str):
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


def test_tensorboard_logs_a_fit(tmp_path):
    X, y = _data()
    spec = TensorBoardLoggerSpec(log_dir=str(tmp_path / "run"), log_interval=2)
    model = PySRRegressor(**{**SMALL, "niterations": 4}, random_state=0, logger_spec=spec,
                          temp_equation_file=True)
    model.fit(X, y)
    events = _events(str(tmp_path / "run"))
    min_loss = [(s, v) for s, t, v in events if t == "search/data/summaries/min_loss"]
    assert [s for s, _ in min_loss] == [2, 4]
    assert min_loss[1][1] <= min_loss[0][1]
    np.testing.assert_allclose(min_loss[1][1], model.equations_["loss"].min(), rtol=1e-6)
    tags = {t for _, t, _ in events}
    assert {"search/data/summaries/pareto_volume", "search/data/summaries/num_evals",
            "search/data/equations/front", "hparams"} <= tags
    for c, loss in zip(model.equations_["complexity"], model.equations_["loss"], strict=True):
        logged = [v for s, t, v in events if t == f"search/data/equations/loss_complexity_{c}" and s == 4]
        np.testing.assert_allclose(logged, [loss], rtol=1e-6)
    front = [v for s, t, v in events if t == "search/data/equations/front" and s == 4][0]
    assert front.count("\n") == len(model.equations_) + 1  # header, rule, one row per equation
    hparams = [v for _, t, v in events if t == "hparams"][0]
    assert f"`populations` = `{SMALL['populations']}`" in hparams
    # overwrite=False: a second fit writes next to the first, not over it
    model.fit(X, y)
    assert os.path.isdir(tmp_path / "run_1") and _events(str(tmp_path / "run_1"))


def test_logger_spec_errors():
    X, y = _data()
    with pytest.raises(TypeError, match="TensorBoardLoggerSpec"):
        PySRRegressor(logger_spec="logs/run", niterations=1).fit(X, y)
    with pytest.raises(ValueError, match="log_interval"):
        TensorBoardLoggerSpec(log_interval=0)
