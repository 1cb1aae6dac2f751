from .annotations import AnnotationMismatchError
from .layout import DatasetLayoutError, check_dataset_layout

__all__ = [
    'AnnotationMismatchError', 'DatasetLayoutError', 'check_dataset_layout'
]
