"""mmseg's depth metric with a working ``depth_metrics`` selection."""
from typing import Optional, Sequence, Union

from mmseg.evaluation.metrics import DepthMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class SelectableDepthMetric(DepthMetric):
    """``DepthMetric`` that accepts ``depth_metrics``.

    mmseg 1.2's ``DepthMetric`` tests ``isinstance(depth_metrics, [tuple,
    list])``, which raises TypeError for any list given, so only "all
    metrics" works. Here the list selects the metrics reported (in that
    order); everything else is mmseg's.

    Args:
        depth_metrics (str | Sequence[str], optional): Metrics to report,
            from ``DepthMetric.METRICS`` (``d1``, ``d2``, ``d3``,
            ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``log10``,
            ``silog``). Defaults to None (all).
        **kwargs: ``DepthMetric``'s other arguments: ``min_depth_eval``,
            ``max_depth_eval``, ``crop_type`` (``'nyu_crop'``: the Eigen crop
            of 480x640 ground truth), ``depth_scale_factor``,
            ``collect_device``, ``output_dir``, ``format_only``, ``prefix``.
    """

    def __init__(self,
                 depth_metrics: Optional[Union[str, Sequence[str]]] = None,
                 **kwargs) -> None:
        super().__init__(depth_metrics=None, **kwargs)
        if depth_metrics is None:
            return
        if isinstance(depth_metrics, str):
            depth_metrics = [depth_metrics]
        depth_metrics = list(depth_metrics)
        unknown = [m for m in depth_metrics if m not in self.METRICS]
        if unknown or not depth_metrics:
            raise ValueError(
                f'depth_metrics {depth_metrics} must be a non-empty list of '
                f'{self.METRICS}; unknown: {unknown}.')
        self.metrics = tuple(dict.fromkeys(depth_metrics))
