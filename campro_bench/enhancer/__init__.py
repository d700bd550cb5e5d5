"""The CamPro image enhancer (U-Net) and the ``campro-enhanced`` protector (ISP then enhancer)."""

from .model import UNet, UNetConfig, load_enhancer, masked_l1_loss, save_enhancer

__all__ = ["UNet", "UNetConfig", "load_enhancer", "masked_l1_loss", "save_enhancer"]
