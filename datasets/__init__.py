"""Dataset plug-ins, one module per dataset; importing this package registers them all."""
