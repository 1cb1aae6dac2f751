"""How a class looks in the generated datasets.

Every class gets a fixed colour and a fixed texture (kind, period and
orientation), so the label of a pixel or an image is decided by what it
looks like: a model can learn it, and a few hundred iterations of a small
model beat chance by a wide margin. Per-image jitter in brightness, a little
noise and random shapes keep it from being a lookup table.
"""
import colorsys
import math

import cv2
import numpy as np

TEXTURES = ('flat', 'stripes', 'checker', 'dots', 'rings')
_GOLDEN = 0.6180339887498949


def class_style(class_index):
    """The appearance of one class.

    Args:
        class_index (int): 0-based class index.

    Returns:
        dict: ``color`` (RGB uint8 array), ``texture`` (one of
        :data:`TEXTURES`), ``period`` (pixels, at a 256-pixel reference
        size) and ``angle`` (radians).
    """
    hue = (class_index * _GOLDEN) % 1.0
    saturation = (0.45, 0.7, 0.95)[class_index % 3]
    value = (0.95, 0.75, 0.55)[(class_index // 3) % 3]
    color = np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255
    return dict(
        color=color.astype(np.uint8),
        texture=TEXTURES[(class_index // 9) % len(TEXTURES)],
        period=(6, 10, 16)[(class_index // 45) % 3],
        angle=math.pi * ((class_index * 7) % 8) / 8)


def class_weights(num_classes, exponent=0.7):
    """Zipf-like class frequencies, as in real scene datasets."""
    weights = 1.0 / np.arange(1, num_classes + 1)**exponent
    return weights / weights.sum()


def render_texture(height, width, style, scale, rng):
    """Paint a full ``height x width`` RGB field in a class's style.

    Args:
        height (int): Field height.
        width (int): Field width.
        style (dict): From :func:`class_style`.
        scale (float): Image size relative to 256 pixels; texture periods
            scale with it so small images keep visible patterns.
        rng (numpy.random.Generator): Source of the per-image jitter.

    Returns:
        numpy.ndarray: float32 array of shape (height, width, 3) in [0, 255].
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = max(style['period'] * scale, 2.0)
    angle = style['angle']
    u = (xs * math.cos(angle) + ys * math.sin(angle)) / period
    v = (-xs * math.sin(angle) + ys * math.cos(angle)) / period
    phase = rng.uniform(0, 1)
    kind = style['texture']
    if kind == 'flat':
        pattern = np.zeros_like(u)
    elif kind == 'stripes':
        pattern = np.sin(2 * math.pi * (u + phase))
    elif kind == 'checker':
        pattern = np.sign(
            np.sin(math.pi * (u + phase)) * np.sin(math.pi * (v + phase)))
    elif kind == 'dots':
        du = (u + phase) % 1.0 - 0.5
        dv = (v + phase) % 1.0 - 0.5
        pattern = np.where(du**2 + dv**2 < 0.08, 1.0, -0.6)
    else:  # rings
        radius = np.sqrt((xs - rng.uniform(0, width))**2 +
                         (ys - rng.uniform(0, height))**2) / period
        pattern = np.sin(2 * math.pi * radius)
    color = style['color'].astype(np.float32) * rng.uniform(0.85, 1.15)
    field = color[None, None, :] * (1.0 + 0.25 * pattern[..., None])
    return np.clip(field, 0, 255)


def random_shape_mask(height, width, rng, min_frac=0.15, max_frac=0.5):
    """A random filled shape, returned with its outline polygon.

    Args:
        height (int): Canvas height.
        width (int): Canvas width.
        rng (numpy.random.Generator): Randomness.
        min_frac (float): Smallest shape size relative to the short side.
        max_frac (float): Largest shape size relative to the short side.

    Returns:
        tuple[numpy.ndarray, numpy.ndarray]: a bool mask (height, width)
        and the polygon (N, 2) float32 in (x, y) pixel coordinates.
    """
    short = min(height, width)
    size = rng.uniform(min_frac, max_frac) * short
    cx = rng.uniform(size / 2, width - size / 2)
    cy = rng.uniform(size / 2, height - size / 2)
    kind = rng.integers(0, 4)
    if kind == 0:  # ellipse
        n = 24
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        rx, ry = size / 2, size / 2 * rng.uniform(0.5, 1.0)
        points = np.stack([rx * np.cos(t), ry * np.sin(t)], 1)
    elif kind == 1:  # rectangle
        rx, ry = size / 2, size / 2 * rng.uniform(0.4, 1.0)
        points = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]])
    elif kind == 2:  # triangle
        t = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) - math.pi / 2
        points = np.stack([np.cos(t), np.sin(t)], 1) * size / 2
    else:  # irregular star-like polygon
        n = int(rng.integers(5, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = rng.uniform(0.5, 1.0, n) * size / 2
        points = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    rot = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(rot), -math.sin(rot)],
                         [math.sin(rot), math.cos(rot)]])
    polygon = points @ rotation.T + np.array([cx, cy])
    polygon[:, 0] = np.clip(polygon[:, 0], 0, width - 1)
    polygon[:, 1] = np.clip(polygon[:, 1], 0, height - 1)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool), polygon.astype(np.float32)


def finish_image(image, rng, noise=6.0):
    """Per-image brightness jitter and sensor noise, then uint8 RGB."""
    image = image * rng.uniform(0.9, 1.1)
    image = image + rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image(path, rgb, quality=92):
    """Write an RGB uint8 array as a JPEG (as the real datasets store)."""
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, quality])
