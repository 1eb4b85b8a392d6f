"""Logs: values stay as the loop gave them until read, then are converted once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from trainbus import Logs, register_converter
from trainbus.means import means


class CountingTensor(torch.Tensor):
    """A torch tensor that counts how often ``item()`` is called (a host-device sync)."""

    items = 0

    def item(self) -> Any:
        CountingTensor.items += 1
        return super().item()


@pytest.fixture
def scalar() -> Callable[[float], torch.Tensor]:
    CountingTensor.items = 0

    def make(value: float) -> torch.Tensor:
        return torch.tensor(value).as_subclass(CountingTensor)

    return make


def test_values_stay_as_given_until_read(scalar: Callable[[float], torch.Tensor]) -> None:
    loss = scalar(0.5)
    logs = Logs(loss=loss, acc=np.float32(0.25))
    logs["lr"] = torch.tensor(0.1)
    assert CountingTensor.items == 0
    raw = logs.raw()
    assert raw["loss"] is loss
    assert type(raw["acc"]) is np.float32
    assert isinstance(raw["lr"], torch.Tensor)
    assert "loss" in logs
    assert len(logs) == 3
    assert list(logs) == ["loss", "acc", "lr"]
    assert list(logs.keys()) == ["loss", "acc", "lr"]
    assert CountingTensor.items == 0


READ_PATHS: dict[str, Callable[[Logs], Any]] = {
    "getitem": lambda logs: logs["loss"],
    "get": lambda logs: logs.get("loss"),
    "items": lambda logs: dict(logs.items())["loss"],
    "values": lambda logs: next(iter(logs.values())),
    "pop": lambda logs: logs.pop("loss"),
    "copy": lambda logs: dict.__getitem__(logs.copy(), "loss"),
    "dict()": lambda logs: dict(logs)["loss"],
    "{**}": lambda logs: {**logs}["loss"],
    "dict.update": lambda logs: _updated(logs)["loss"],
}


def _updated(logs: Logs) -> dict[str, Any]:
    target: dict[str, Any] = {}
    target.update(logs)
    return target


@pytest.mark.parametrize("read", READ_PATHS.values(), ids=READ_PATHS.keys())
def test_every_read_path_converts_a_torch_scalar_once(
    read: Callable[[Logs], Any], scalar: Callable[[float], torch.Tensor]
) -> None:
    logs = Logs(loss=scalar(0.5))
    value = read(logs)
    assert value == 0.5
    assert type(value) is float
    assert CountingTensor.items == 1
    if "loss" in logs:  # everything but pop keeps the converted value, cached
        assert type(logs.raw()["loss"]) is float
        assert read(logs) == 0.5
        assert logs["loss"] == 0.5
        assert dict(logs) == {"loss": 0.5}
        assert CountingTensor.items == 1


def test_repeated_reads_are_cached(scalar: Callable[[float], torch.Tensor]) -> None:
    logs = Logs(loss=scalar(2.0), acc=scalar(0.5))
    CountingTensor.items = 0
    for _ in range(3):
        assert logs["loss"] == 2.0
        assert logs.get("loss") == 2.0
        assert dict(logs) == {"loss": 2.0, "acc": 0.5}
        assert list(logs.values()) == [2.0, 0.5]
    assert CountingTensor.items == 2


def test_torch_item_is_called_once_when_monkeypatched(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = torch.Tensor.item

    def item(self: torch.Tensor) -> Any:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    logs = Logs(loss=torch.tensor(3.0))
    assert calls == []
    assert logs["loss"] == 3.0
    assert dict(logs) == {"loss": 3.0}
    assert calls == [1]


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [
        (np.float32(0.5), 0.5, float),
        (np.float64(0.25), 0.25, float),
        (np.int64(7), 7, int),
        (np.bool_(True), True, bool),
        (np.array(1.5), 1.5, float),
        (torch.tensor(0.75), 0.75, float),
        (torch.tensor(3), 3, int),
        (torch.tensor(1.5, dtype=torch.float64), 1.5, float),
        (1.0, 1.0, float),
        (2, 2, int),
        ("adam", "adam", str),
        (None, None, type(None)),
    ],
    ids=repr,
)
def test_scalars_become_python_scalars(value: Any, expected: Any, kind: type) -> None:
    got = Logs(v=value)["v"]
    assert got == expected
    assert type(got) is kind


def test_multi_element_values_become_numpy_arrays() -> None:
    logs = Logs(
        t=torch.tensor([1.0, 2.0]),
        n=np.array([[1, 2], [3, 4]]),
        grad=torch.ones(3, requires_grad=True) * 2,
    )
    assert isinstance(logs["t"], np.ndarray)
    np.testing.assert_array_equal(logs["t"], [1.0, 2.0])
    np.testing.assert_array_equal(logs["n"], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(logs["grad"], [2.0, 2.0, 2.0])


def test_other_values_pass_through_unchanged() -> None:
    marker = object()
    history = [1.0, 2.0]
    logs = Logs(marker=marker, history=history)
    assert logs["marker"] is marker
    assert logs["history"] is history


def test_register_converter_handles_an_exact_type() -> None:
    class Meters:
        def __init__(self, value: float) -> None:
            self.value = value

    class Feet(Meters):
        pass

    register_converter(Meters, lambda m: float(m.value) * 100)
    assert Logs(d=Meters(3))["d"] == 300.0
    feet = Feet(1)
    assert Logs(d=feet)["d"] is feet  # exact type match only


def test_register_converter_overrides_the_generic_conversion() -> None:
    class DeviceTensor(torch.Tensor):
        pass

    register_converter(DeviceTensor, lambda t: "converted by adapter")
    value = torch.tensor(1.0).as_subclass(DeviceTensor)
    assert Logs(loss=value)["loss"] == "converted by adapter"
    assert Logs(loss=torch.tensor(1.0))["loss"] == 1.0  # other types keep the generic path


def test_pop_and_get_defaults() -> None:
    logs = Logs(a=1.0)
    assert logs.get("missing") is None
    assert logs.get("missing", 0.0) == 0.0
    assert logs.pop("missing", "default") == "default"
    with pytest.raises(KeyError):
        logs.pop("missing")
    with pytest.raises(KeyError):
        logs["missing"]
    assert logs.pop("a") == 1.0
    assert logs == {}


def test_copy_is_a_logs_with_converted_values(scalar: Callable[[float], torch.Tensor]) -> None:
    logs = Logs(loss=scalar(1.0))
    copy = logs.copy()
    assert type(copy) is Logs
    assert copy.raw() == {"loss": 1.0}
    copy["acc"] = scalar(0.5)
    assert "acc" not in logs
    assert type(copy.raw()["acc"]) is CountingTensor  # later additions stay lazy


def test_logs_is_a_dict_and_prints_converted_values() -> None:
    logs = Logs(loss=np.float32(0.5))
    assert isinstance(logs, dict)
    assert repr(logs) == "{'loss': 0.5}"


# -- means over batch logs ------------------------------------------------------------


def test_means_average_numbers_per_key_over_the_batches_that_logged_it() -> None:
    result = means(
        [
            {"loss": 1.0, "acc": 0.5},
            {"loss": 3.0},
            {"loss": 2.0, "acc": 1.0, "lr": 0.1},
        ]
    )
    assert result == {"loss": 2.0, "acc": 0.75, "lr": 0.1}
    assert list(result) == ["loss", "acc", "lr"]


def test_means_of_ints_and_numpy_scalars() -> None:
    assert means([{"n": 1}, {"n": 2}]) == {"n": 1.5}
    result = means([{"x": np.float32(1.0)}, {"x": np.float32(2.0)}])
    assert Logs(result)["x"] == 1.5


def test_means_keep_torch_tensors_until_read(scalar: Callable[[float], torch.Tensor]) -> None:
    batches = [{"loss": scalar(v)} for v in (1.0, 2.0, 6.0)]
    result = means(batches)
    assert isinstance(result["loss"], torch.Tensor)
    assert CountingTensor.items == 0
    logs = Logs(result)
    assert logs["loss"] == pytest.approx(3.0)
    assert CountingTensor.items == 1


def test_means_keep_the_last_string() -> None:
    assert means([{"phase": "warmup"}, {"phase": "main"}]) == {"phase": "main"}


def test_means_of_nothing_is_empty() -> None:
    assert means([]) == {}
    assert means([{}, {}]) == {}
