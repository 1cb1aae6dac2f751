"""MMSeg-specific modules (registered in mmseg's registries): the DPT depth
head and fixes for mmseg's depth estimator and depth metric."""
