"""The body's bounding box in a decoded X-ray, and the crop to it: the input pipeline's frame
normalisation (`--crop-to-body`, docs/frame.md).

Training NORMAL files show a smaller body in more black margin than PNEUMONIA files, so the
frame tells the class. Cropping every image to the body, in training and wherever a run scores
an image, takes that margin out of the input before the model sees it.

The rule, written before any run of it:
- a pixel is *body* when it is brighter than air: above max(25, a quarter of the image's
  99th-percentile grey level);
- a row (column) belongs to the body when more than 10% of its pixels are body and it is not
  flat (standard deviation of its grey levels above 4): a uniform band, such as a shutter or a
  painted border, carries no anatomy however bright it is;
- the box spans the longest stretch of body rows (columns), gaps of up to 4% of the side
  bridged, so that a stray label or marker apart from the body does not widen it;
- when the box covers less than 15% of the image, or no row or column qualifies, no body was
  found: the whole image is used, and the caller counts it.
"""

from __future__ import annotations

import numpy as np

AIR_LEVEL = 25  # 8-bit grey: darker than this is air or margin, whatever the exposure
AIR_SHARE_OF_P99 = 0.25
BODY_SHARE = 0.10  # of a row's (column's) pixels that must be body
FLAT_STD = 4.0  # grey levels: a row (column) this uniform is a band, not anatomy
GAP = 0.04  # of the side: gaps between body rows bridged
MIN_AREA = 0.15  # of the image: a smaller box is taken as no body found


def _longest_run(qualifies: np.ndarray, gap: int) -> tuple[int, int] | None:
    """[start, stop) of the longest stretch of True, gaps of up to `gap` False bridged."""
    index = np.flatnonzero(qualifies)
    if index.size == 0:
        return None
    breaks = np.flatnonzero(np.diff(index) > gap + 1)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks, [index.size - 1]])
    longest = int(np.argmax(index[stops] - index[starts]))
    return int(index[starts[longest]]), int(index[stops[longest]]) + 1


def body_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the body in a 2-D 8-bit grey image, bottom and right
    exclusive; None when no body is found (see the module's rule)."""
    pixels = np.asarray(grey, dtype=np.float32)
    height, width = pixels.shape
    air = max(AIR_LEVEL, AIR_SHARE_OF_P99 * float(np.percentile(pixels, 99)))
    body = pixels > air
    rows = (body.mean(axis=1) > BODY_SHARE) & (pixels.std(axis=1) > FLAT_STD)
    cols = (body.mean(axis=0) > BODY_SHARE) & (pixels.std(axis=0) > FLAT_STD)
    row_span = _longest_run(rows, round(GAP * height))
    col_span = _longest_run(cols, round(GAP * width))
    if row_span is None or col_span is None:
        return None
    (top, bottom), (left, right) = row_span, col_span
    if (bottom - top) * (right - left) < MIN_AREA * height * width:
        return None
    return top, bottom, left, right


def crop_to_body(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """The image cropped to its body's box, and whether a body was found (if not, the image
    as it is)."""
    box = body_box(grey)
    if box is None:
        return grey, False
    top, bottom, left, right = box
    return grey[top:bottom, left:right], True
