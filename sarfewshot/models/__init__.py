"""Backbones: the iRPE ViT of SAR-JEPA, timm ViTs, checkpoint loading and the registry."""
