import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # 2 shared cores: one thread is far faster than two under contention

from genserve.models import load_adapter  # noqa: E402


@pytest.fixture(scope="session")
def sd3():
    return load_adapter("tiny-sd3")


@pytest.fixture(scope="session")
def wan():
    return load_adapter("tiny-wan")
