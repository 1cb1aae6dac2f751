"""A generated NYUv2 depth dataset in mmseg's NYU layout.

Each image is a room seen by a pinhole camera: a textured floor plane, a
back wall (possibly slanted) and boxes standing on the floor. The depth map
is the exact depth of that geometry, so the cues a model can learn from are
the real ones: perspective of the floor pattern, where an object touches the
floor, apparent size, and haze that grows with distance.
"""
import os
import os.path as osp

import cv2
import numpy as np

from .appearance import class_style, finish_image, render_texture, write_image
from .options import check_options
from .progress import track

# Scene prefixes of real NYUv2 file names; mmseg's NYUDataset derives its
# `category_id` from them.
NYU_SCENES = ('bathroom', 'bedroom', 'bookstore', 'cafe', 'classroom',
              'dining_room', 'home_office', 'kitchen', 'living_room',
              'office', 'playroom', 'study')
MAX_DEPTH = 10.0


def render_room(height, width, rng):
    """Render one room.

    Args:
        height (int): Image height.
        width (int): Image width.
        rng (numpy.random.Generator): Randomness.

    Returns:
        tuple[numpy.ndarray, numpy.ndarray]: RGB uint8 image and depth in
        metres (float32, 0 where the sensor has no reading).
    """
    focal = 0.81 * width  # NYUv2's Kinect: fx ~ 518 px at 640 px width.
    cx = width / 2
    horizon = height * rng.uniform(0.35, 0.5)
    cam_height = rng.uniform(1.0, 1.6)
    wall_dist = rng.uniform(3.5, 9.0)
    wall_slope = rng.uniform(-2.0, 2.0)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    below = np.maximum(ys + 0.5 - horizon, 1e-3)
    floor_depth = focal * cam_height / below
    wall_depth = np.clip(wall_dist + wall_slope * (xs - cx) / width, 2.5,
                         MAX_DEPTH - 0.2)
    is_floor = (ys + 0.5 > horizon) & (floor_depth < wall_depth)
    depth = np.where(is_floor, floor_depth, wall_depth)

    scale = min(height, width) / 256
    # Floor: a checkerboard laid on the floor plane, in metres.
    world_x = (xs - cx) * floor_depth / focal
    tile = rng.uniform(0.3, 0.6)
    checker = ((np.floor(world_x / tile) + np.floor(floor_depth / tile)) %
               2).astype(np.float32)
    floor_color = rng.uniform(60, 200, 3).astype(np.float32)
    floor = floor_color * (0.75 + 0.5 * checker[..., None])
    wall = render_texture(height, width,
                          class_style(int(rng.integers(0, 40))), scale, rng)
    image = np.where(is_floor[..., None], floor, wall)

    # Boxes standing on the floor, painted far to near.
    boxes = []
    for _ in range(int(rng.integers(1, 5))):
        z = rng.uniform(1.0, wall_dist - 0.5)
        x = rng.uniform(-1.5, 1.5) * z / 3
        boxes.append((z, x, rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.5)))
    for z, x, box_width, box_height in sorted(boxes, reverse=True):
        left = int(round(cx + focal * (x - box_width / 2) / z))
        right = int(round(cx + focal * (x + box_width / 2) / z))
        bottom = int(round(horizon + focal * cam_height / z))
        top = int(round(horizon + focal * (cam_height - box_height) / z))
        left, right = max(left, 0), min(right, width)
        top, bottom = max(top, 0), min(bottom, height)
        if right <= left or bottom <= top:
            continue
        region = (slice(top, bottom), slice(left, right))
        depth[region] = z
        style = class_style(int(rng.integers(40, 150)))
        image[region] = render_texture(bottom - top, right - left, style,
                                       scale, rng)

    # Haze: far surfaces fade towards a grey, a learnable monocular cue.
    haze = (1 - np.exp(-depth / 6.0))[..., None] * 0.6
    image = image * (1 - haze) + 128 * haze
    # Shading falls off with distance as a room light would.
    image = image * (1.2 - 0.05 * depth)[..., None]

    # Missing sensor readings, as in NYUv2's raw depth: a few small holes.
    for _ in range(int(rng.integers(0, 4))):
        hole_y, hole_x = rng.integers(0, height), rng.integers(0, width)
        radius = max(1, int(rng.uniform(0.01, 0.03) * width))
        cv2.circle(depth, (int(hole_x), int(hole_y)), radius, 0.0, -1)
    return finish_image(image, rng), depth.astype(np.float32)


def make_nyu(out, num_train=100, num_val=20, img_size=(480, 640), seed=0):
    """Generate NYUv2 depth in mmseg's layout.

    ``out/images/{train,test}/<scene>_<id>.jpg`` and
    ``out/annotations/{train,test}/<scene>_<id>.png``: uint16 PNG depth in
    millimetres (``LoadDepthAnnotation(depth_rescale_factor=1e-3)``), 0 for
    no reading. The default size is NYUv2's 480x640, which the ``nyu_crop``
    of ``DepthMetric`` assumes.

    Args:
        out (str): Dataset root, e.g. ``data/nyu``.
        num_train (int): Training images.
        num_val (int): Test images.
        img_size (tuple[int, int]): (height, width).
        seed (int): Random seed.

    Returns:
        str: The dataset root.
    """
    check_options('nyu', num_train, num_val, img_size, seed=seed)
    rng = np.random.default_rng(seed)
    for split, count, first_id in (('train', num_train, 1),
                                   ('test', num_val, 50000)):
        image_dir = osp.join(out, 'images', split)
        depth_dir = osp.join(out, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(depth_dir, exist_ok=True)
        for i in track(range(count), f'NYUv2 {split}'):
            stem = f'{NYU_SCENES[i % len(NYU_SCENES)]}_{first_id + i:05d}'
            image, depth = render_room(*img_size, rng)
            write_image(osp.join(image_dir, stem + '.jpg'), image)
            depth_mm = np.round(depth * 1000).astype(np.uint16)
            cv2.imwrite(osp.join(depth_dir, stem + '.png'), depth_mm)
    return out
