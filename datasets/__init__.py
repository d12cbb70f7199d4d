"""Dataset plug-ins, one module per dataset; importing this package registers them all."""

from sarfewshot.datasets import (  # noqa: F401
    atrnet_star,
    folder,
    fusar_ship,
    mstar_raw,
    mstar_soc,
    sample,
    sar_acd,
    synthetic,
)
