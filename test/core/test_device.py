"""The one device rule (fusanet_core.device) and its users: trainer, Predictor, depth node settings."""

from __future__ import annotations

import pytest
import torch

from fusanet_core.config import config_from_dict
from fusanet_core.device import check_device_name, resolve_device
from fusanet_core.inference import predictor
from fusanet_core.training.trainer import Trainer


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("name", ["gpu", "tpu", "cuda0", "cuda:", "cuda:-1", "cuda:x", "CPU", " cpu", ""])
def test_malformed_names_are_refused_naming_the_setting(name):
    with pytest.raises(ValueError, match=r"train\.device must be auto, cpu, cuda or cuda:N, got "):
        resolve_device(name, what="train.device")
    with pytest.raises(ValueError, match="parameter device must be auto, cpu, cuda or cuda:N"):
        check_device_name(name, "parameter device")


def test_without_cuda_auto_is_the_cpu_and_cuda_is_an_error(no_cuda):
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=f"device '{name}' requested but CUDA is not available"):
            resolve_device(name)
    assert check_device_name("cuda:1") == "cuda:1"  # well formed: the node checks names before any GPU is used


def test_cuda_is_this_processes_gpu(two_gpus):
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device("auto", local_rank=1) == resolve_device("cuda", local_rank=1) == torch.device("cuda:1")
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda:0")  # an explicit index wins
    with pytest.raises(ValueError, match=r"'cuda:2' requested but only 2 CUDA device\(s\) are visible"):
        resolve_device("cuda:2")


def test_every_user_follows_the_rule(no_cuda):
    assert predictor.resolve_device is resolve_device  # still importable from the predictor
    with pytest.raises(ValueError, match="train.device 'cuda' requested but CUDA is not available"):
        Trainer(config_from_dict({"train": {"device": "cuda"}}))
    from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings
    from fusanet_ros.nodes.params import defaults

    values = defaults(PARAMETERS)
    for name in ("cuda", "cuda:1"):  # a GPU is looked for when the model loads, not when the parameter is set
        assert validate_settings({**values, "device": name}).device == name
    with pytest.raises(ValueError, match="parameter device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"):
        validate_settings({**values, "device": "cuda:x"})
