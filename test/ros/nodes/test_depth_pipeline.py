"""DepthPipeline (the depth nodes' composed pipeline), in-process with a stand-in node: settings reach the Predictor."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("rclpy")

from fusanet_ros.nodes.depth_pipeline import DepthPipeline  # noqa: E402
from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings  # noqa: E402
from fusanet_ros.nodes.params import defaults  # noqa: E402


class FakeNode:
    """The parts of an rclpy node that the parameter callback uses."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get_parameter(self, name: str) -> Any:
        return SimpleNamespace(value=self.values[name])


class RecordingPredictor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def set_point_fit(self, mode: str, min_points: int = 8, prime: bool = True) -> None:
        self.calls.append((mode, min_points, prime))


def _param(name: str, value: Any) -> Any:
    return SimpleNamespace(name=name, value=value)


def test_point_fit_settings_reach_the_predictor_when_they_change_and_only_valid_ones() -> None:
    values = defaults(PARAMETERS)
    pipeline = DepthPipeline(FakeNode(values))
    pipeline.settings = validate_settings(values)
    pipeline.predictor = RecordingPredictor()
    assert pipeline._on_set_parameters([_param("scale_from_points", "scale_shift")]).successful
    assert pipeline.settings.scale_from_points == "scale_shift"
    expected = ("scale_shift", pipeline.settings.scale_fit_min_points, pipeline.settings.prime_with_points)
    assert pipeline.predictor.calls == [expected]
    refused = pipeline._on_set_parameters([_param("scale_from_points", "cubic")])
    assert not refused.successful and "cubic" in refused.reason
    assert pipeline.predictor.calls == [expected] and pipeline.settings.scale_from_points == "scale_shift"
    assert pipeline._on_set_parameters([_param("qos_overrides./x.reliability", "reliable")]).successful  # not ours
    assert len(pipeline.predictor.calls) == 1


def test_a_pipeline_before_configure_has_no_inputs_and_no_model() -> None:
    pipeline = DepthPipeline(FakeNode(defaults(PARAMETERS)))
    assert not pipeline.has_inputs and pipeline.predictor is None
    pipeline._apply_point_fit(validate_settings(defaults(PARAMETERS)))  # no model yet: nothing to set, no error
