"""How well attention maps find the actor: mass inside the ground-truth box and the pointing game.

A map a [h, w] over an image of H x W pixels gives cell (r, c) the pixel rectangle
[c*W/w, (c+1)*W/w) x [r*H/h, (r+1)*H/h). For a box B (x0, y0, x1, y1; x1/y1 exclusive):

    mass(a, B)  = sum_cells a_rc * |cell_rc ∩ B| / |cell_rc|        (attention mass inside B)
    hit(a, B)   = centre of argmax_rc a_rc lies in B               (pointing game)

The uniform map (what GP uses) is the baseline: mass = |B| / (H W), hit rate = the share of
cell centres inside B. Grad-CAM, the saliency every reader compares with, is scored the same way:

    gradcam_t = ReLU(sum_c w_tc F_tc),  w_tc = mean_ij d z_k / d F_tc,ij   (k: the fused prediction)

over the backbone's last feature map F_t of each sampled frame t (the attention maps' grid),
scaled to sum to 1 like an attention map.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from attnet.models.attention import box_coverage as _box_coverage


def box_coverage(shape: tuple[int, int], box, image_size: tuple[int, int]) -> np.ndarray:
    """[h, w] fraction of each map cell inside the box (the oracle stream's helper, one box)."""
    return _box_coverage(torch.as_tensor(box, dtype=torch.float64)[None], shape, image_size)[0].numpy()


def mass_in_box(attention: np.ndarray, box, image_size: tuple[int, int]) -> float:
    return float((np.asarray(attention) * box_coverage(attention.shape, box, image_size)).sum())


def pointing_hit(attention: np.ndarray, box, image_size: tuple[int, int]) -> bool:
    h, w = attention.shape
    r, c = np.unravel_index(int(np.argmax(attention)), (h, w))
    y, x = (r + 0.5) * image_size[0] / h, (c + 0.5) * image_size[1] / w
    x0, y0, x1, y1 = box
    return bool(x0 <= x < x1 and y0 <= y < y1)


def as_distribution(maps: torch.Tensor) -> torch.Tensor:
    """[T, h, w] non-negative maps scaled to sum to 1 per frame; a frame with no positive cell
    (Grad-CAM's ReLU can zero all) becomes uniform: it points nowhere in particular."""
    total = maps.sum(dim=(1, 2), keepdim=True)
    return torch.where(total > 0, maps / total.clamp(min=torch.finfo(maps.dtype).tiny),
                       torch.full_like(maps, 1.0 / maps[0].numel()))


def grad_cam(model, clip: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM [T, h, w] of one clip [T, 3, H, W] (captum's LayerGradCam on the backbone) for
    the fused prediction, per sampled frame, as a distribution (as_distribution). `boxes` [T, 4]:
    the oracle stream's input, for models that have it."""
    from captum.attr import LayerGradCam
    extra = None if boxes is None else (boxes[None],)

    def fused(x, *b):
        return model(x, *b).logits

    x = clip[None]
    # cuDNN's LSTM / GRU backward refuses eval mode; the model stays in eval mode (no dropout)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        with torch.no_grad():
            target = int(fused(x, *(extra or ())).argmax(1))
        cam = LayerGradCam(fused, model.backbone).attribute(x, target=target, additional_forward_args=extra,
                                                            relu_attributions=True)
    return as_distribution(cam[:, 0].detach().float())


def uniform_baseline(shape: tuple[int, int], box, image_size: tuple[int, int]) -> tuple[float, float]:
    """(mass, expected pointing hit rate) of uniform attention: the GP stream's implicit map."""
    h, w = shape
    mass = mass_in_box(np.full(shape, 1.0 / (h * w)), box, image_size)
    rows, cols = (np.arange(h) + 0.5) * image_size[0] / h, (np.arange(w) + 0.5) * image_size[1] / w
    x0, y0, x1, y1 = box
    inside = np.outer((rows >= y0) & (rows < y1), (cols >= x0) & (cols < x1))
    return mass, float(inside.mean())


@torch.no_grad()
def localization_scores(model, dataset, boxes_of, max_videos: int | None = None,
                        gradcam: bool = False) -> pd.DataFrame:
    """Per (video, frame, stream) attention mass in the actor box and pointing hit, plus the
    uniform baseline as stream "uniform" and, with `gradcam`, the model's Grad-CAM as "gradcam".
    `boxes_of(record) -> [F, 4]` gives the boxes of a video; frames are the first test clip's
    (dataset.frame_indices). Needs size == resize
    (no rescale) so boxes are in input pixels. An "oracle" stream gets the boxes too: its
    scores are the ceiling of attention that only knows the box at the map's resolution."""
    if set(model.streams) <= {"gp"}:
        raise ValueError(f"the model has no attention stream (streams {model.streams}): nothing to localise")
    model.eval()
    rows = []
    for i in range(len(dataset) if max_videos is None else min(max_videos, len(dataset))):
        clip = dataset[i][0]
        clip = clip if clip.dim() == 4 else clip[0]
        indices = dataset.frame_indices(i)[0].tolist()
        boxes = boxes_of(dataset.records[i])
        device = next(model.parameters()).device
        clip_boxes = torch.as_tensor(boxes[indices], dtype=torch.float32, device=device) \
            if "oracle" in model.streams else None
        out = model(clip[None].to(device), None if clip_boxes is None else clip_boxes[None])
        maps = dict(out.attention)
        if gradcam:
            maps["gradcam"] = grad_cam(model, clip.to(device), clip_boxes)[None]
        size = tuple(clip.shape[-2:])
        for t, frame in enumerate(indices):
            box = boxes[frame]
            if box[2] <= box[0] or box[3] <= box[1]:
                continue                                  # actor out of view
            for stream, m in maps.items():
                a = m[0, t].float().cpu().numpy()
                rows.append({"video": i, "frame": frame, "stream": stream,
                             "mass": mass_in_box(a, box, size), "hit": pointing_hit(a, box, size)})
            mass, hit = uniform_baseline(tuple(next(iter(out.attention.values())).shape[-2:]), box, size)
            rows.append({"video": i, "frame": frame, "stream": "uniform", "mass": mass, "hit": hit})
    return pd.DataFrame(rows)
