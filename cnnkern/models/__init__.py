"""Bundled models built from ``cnnkern.nn`` modules.

    import cnnkern.models
    m = cnnkern.models.mobilenet_v2(num_classes=10)
    m = cnnkern.models.get_model("shufflenet_v1", groups=8, width_mult=0.5)
    cnnkern.models.list_models()

Where torchvision has the model (ResNets, ResNeXt, Wide ResNet, MobileNetV2, ShuffleNetV2) the module tree
and state_dict keys are torchvision's: ``model.load_state_dict(torchvision_model.state_dict())`` loads
pretrained weights. Nothing is downloaded here.
"""

from cnnkern.models._registry import get_model, list_models
from cnnkern.models.mobilenet_v1 import MobileNetV1, mobilenet_v1
from cnnkern.models.mobilenet_v2 import MobileNetV2, mobilenet_v2
from cnnkern.models.resnet import (
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    wide_resnet50_2,
)
from cnnkern.models.shufflenet_v1 import ShuffleNetV1, shufflenet_v1
from cnnkern.models.shufflenet_v2 import (
    ShuffleNetV2,
    shufflenet_v2_x0_5,
    shufflenet_v2_x1_0,
    shufflenet_v2_x1_5,
    shufflenet_v2_x2_0,
)

__all__ = [
    "MobileNetV1",
    "MobileNetV2",
    "ResNet",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "get_model",
    "list_models",
    "mobilenet_v1",
    "mobilenet_v2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "shufflenet_v1",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "wide_resnet50_2",
]
