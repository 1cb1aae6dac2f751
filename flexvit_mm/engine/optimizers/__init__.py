"""Optimizer wrapper constructors, registered in mmengine's root registry."""
