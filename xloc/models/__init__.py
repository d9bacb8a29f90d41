"""Networks (PyTorch modules), each with its paper's equation and tensor shapes in its docstring: the RSS MLP, the
CSI-image CNN, ALLoc's CSI baselines (CNN, MFCNet), the AGNN, the Mateformer and ICL transformer, and LWLM's
channel encoder with its decoders. Training lives in :mod:`xloc.learn`."""

from __future__ import annotations

from xloc.models.agnn import AGNN
from xloc.models.cnn import CsiImageCNN
from xloc.models.csi_nets import CsiCNN, MFCNet
from xloc.models.icl import ICLTransformer
from xloc.models.lwlm import ChannelEncoder, ChannelHead, MultiBSHead
from xloc.models.mateformer import Mateformer
from xloc.models.mlp import MLP

__all__ = ["AGNN", "CsiImageCNN", "CsiCNN", "MFCNet", "ICLTransformer", "ChannelEncoder", "ChannelHead", "MultiBSHead",
           "Mateformer", "MLP"]
