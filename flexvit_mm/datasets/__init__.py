from .layout import DatasetLayoutError, check_dataset_layout

__all__ = ['DatasetLayoutError', 'check_dataset_layout']
