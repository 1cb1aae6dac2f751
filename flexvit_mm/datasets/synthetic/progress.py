"""Progress bars for long generation work."""
import sys

from mmengine.utils import ProgressBar


def track(items, desc):
    """Iterate ``items`` with mmengine's progress bar on stderr."""
    items = list(items)
    print(f'{desc}: {len(items)} items', file=sys.stderr)
    bar = ProgressBar(len(items), file=sys.stderr)
    for item in items:
        yield item
        bar.update()
    sys.stderr.write('\n')
