"""The real photographs: sizes, value ranges, annotations, licenses and target format."""
import pytest
import torch

from cvcourse.data import photos
from cvcourse.metrics import mean_average_precision


def test_at_least_six_photos_with_objects():
    assert len(photos.names()) >= 6
    assert all(photos.info(n)["objects"] for n in photos.names())


@pytest.mark.parametrize("name", photos.names())
def test_photo_loads_with_stated_size_and_range(name):
    image = photos.load(name)
    h, w = photos.info(name)["size"]
    assert image.dtype == torch.float32 and image.shape == (3, h, w)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.max()) > 0.5 and float(image.std()) > 0.05  # a real image, not blank


def test_grey_photo_is_repeated_over_channels():
    image = photos.load("camera")
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    assert not torch.equal(photos.load("coffee")[0], photos.load("coffee")[1])


@pytest.mark.parametrize("name", photos.names())
def test_boxes_inside_and_ordered_with_coco_labels(name):
    meta = photos.info(name)
    h, w = meta["size"]
    assert meta["source"].strip() and meta["license"].strip() and meta["description"].strip()
    for obj in meta["objects"]:
        x1, y1, x2, y2 = obj["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (name, obj)
        assert obj["label"] in photos.COCO_IDS


def test_coco_ids_match_torchvision_categories():
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    categories = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]  # meta only
    for label, coco_id in photos.COCO_IDS.items():
        assert categories[coco_id] == label


def test_info_is_a_copy():
    photos.info("coffee")["objects"][0]["box"][0] = -99
    assert photos.info("coffee")["objects"][0]["box"][0] == 172


@pytest.mark.parametrize("bad", ["horse", "", None, 3])
def test_unknown_name_lists_the_names(bad):
    for fn in (photos.info, photos.load, photos.targets):
        with pytest.raises(ValueError, match="name must be one of .*astronaut"):
            fn(bad)


def test_targets_format_scores_with_mean_average_precision():
    all_targets = [photos.targets(n) for n in photos.names()]
    for name, t in zip(photos.names(), all_targets):
        n = len(photos.info(name)["objects"])
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (n, 4)
        assert t["labels"].dtype == torch.int64 and t["labels"].shape == (n,)
        assert t["names"] == [o["label"] for o in photos.info(name)["objects"]]
    # the annotations as detections score 1; each box shifted by a third of its width
    # (IoU 0.5) is a hit at 0.5 only.
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
               for t in all_targets]
    assert mean_average_precision(perfect, all_targets)["map"] == pytest.approx(1.0)
    shifted = []
    for t in all_targets:
        b = t["boxes"].clone()
        dx = (b[:, 2] - b[:, 0]) / 3                              # IoU = (2/3) / (4/3) = 0.5
        b[:, 0] += dx
        b[:, 2] += dx
        shifted.append({"boxes": b, "labels": t["labels"], "scores": torch.ones(len(b))})
    result = mean_average_precision(shifted, all_targets, iou_thresholds=[0.45, 0.55])
    assert result["map"] == pytest.approx(0.5)


def test_photos_figure_draws_every_photo_and_box():
    fig = photos.photos_figure(ncols=3)
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == photos.names()
    n_boxes = sum(len(photos.info(n)["objects"]) for n in photos.names())
    assert sum(len(ax.patches) for ax in axes) == n_boxes
    with pytest.raises(ValueError, match="ncols"):
        photos.photos_figure(ncols=0)
    with pytest.raises(ValueError, match="size"):
        photos.photos_figure(size=-1)


def test_coffee_masks_fit_inside_their_boxes_and_do_not_overlap():
    assert photos.has_masks("coffee") and not photos.has_masks("motorcycle")
    masks = photos.masks("coffee")
    meta = photos.info("coffee")
    h, w = meta["size"]
    assert masks.dtype == torch.bool and masks.shape == (len(meta["objects"]), h, w)
    assert int(masks.sum(0).max()) == 1, "visible masks must not overlap"
    for mask, obj in zip(masks, meta["objects"]):
        x1, y1, x2, y2 = obj["box"]
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert int(xs.min()) >= x1 and int(xs.max()) < x2 and int(ys.min()) >= y1 and int(ys.max()) < y2
        # the polygon reaches every side of its hand-drawn box (within 5 px; the cup's
        # right side is hidden behind the spoon)
        assert int(xs.min()) - x1 <= 5 and int(ys.min()) - y1 <= 5 and y2 - 1 - int(ys.max()) <= 5
        # and fills a good part of it (a cup or a spoon, not a sliver)
        assert float(mask.sum()) / ((x2 - x1) * (y2 - y1)) > 0.25, obj["label"]


def _segments_cross(p, q, r, s):
    """Whether segments pq and rs properly intersect (orientation test)."""
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (orient(p, q, r) * orient(p, q, s) < 0) and (orient(r, s, p) * orient(r, s, q) < 0)


@pytest.mark.parametrize("name", [n for n in photos.names() if photos.has_masks(n)])
def test_polygons_are_simple_and_inside_the_image(name):
    h, w = photos.info(name)["size"]
    for obj in photos.info(name)["objects"]:
        pts = obj["polygon"]
        n = len(pts)
        assert n >= 3 and all(0 <= x <= w and 0 <= y <= h for x, y in pts)
        edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
        for i in range(n):
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue                                  # neighbours share a vertex
                assert not _segments_cross(*edges[i], *edges[j]), (obj["label"], i, j)
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in edges) / 2   # shoelace
        assert abs(area) > 100, obj["label"]


def test_masks_of_a_photo_without_polygons_is_a_clear_error():
    with pytest.raises(ValueError, match="photo with polygons .*coffee"):
        photos.masks("motorcycle")


def test_astronaut_face_box_inside_the_person_box():
    face = photos.faces("astronaut")
    assert face.dtype == torch.float32 and face.shape == (1, 4)
    person = photos.targets("astronaut")["boxes"][0]
    assert (face[0, :2] >= person[:2]).all() and (face[0, 2:] <= person[2:]).all()
    assert photos.faces("coffee").shape == (0, 4)
    assert "face" not in photos.COCO_IDS       # the COCO objects stay COCO classes


def test_load_resized_scales_image_and_boxes_together():
    small, t = photos.load_resized("motorcycle", 256)
    assert small.shape == (3, 173, 256) and small.dtype == torch.float32
    assert 0.0 <= float(small.min()) and float(small.max()) <= 1.0
    full = photos.targets("motorcycle")
    assert torch.allclose(t["boxes"][:, 0::2], full["boxes"][:, 0::2] * 256 / 741)
    assert torch.allclose(t["boxes"][:, 1::2], full["boxes"][:, 1::2] * 173 / 500)
    assert torch.equal(t["labels"], full["labels"])
    # the mean colour survives the resize (antialiased: no aliasing of fine detail)
    assert torch.allclose(small.mean((1, 2)), photos.load("motorcycle").mean((1, 2)), atol=0.01)
    with pytest.raises(ValueError, match="max_side"):
        photos.load_resized("motorcycle", 0)


def test_scene_of_a_photo_matches_the_shapes_scene_format():
    scene = photos.scene("coffee")
    assert scene["class_names"] == ["background", "cup", "spoon"]
    assert scene["labels"].tolist() == [1, 2] and scene["labels"].dtype == torch.int64
    assert scene["semantic"].shape == (400, 600) and scene["semantic"].dtype == torch.int64
    # the semantic map is the union of the instance masks, class by class
    for k, label in enumerate(scene["labels"].tolist()):
        assert torch.equal(scene["semantic"] == label, scene["masks"][k])
    assert int((scene["semantic"] == 0).sum()) == 400 * 600 - int(scene["masks"].sum())
    with pytest.raises(ValueError, match="photo with polygons"):
        photos.scene("astronaut")


def test_photo_tasks_figure_draws_the_four_outputs():
    from cvcourse.widgets.tasks import TASKS, output_shapes, photo_tasks_figure, task_outputs

    scene = photos.scene("coffee")
    assert task_outputs(scene)["classification"]["label"] == 1          # the cup covers most
    assert output_shapes(scene)["instance segmentation"] == "masks [2, 400, 600], labels [2]"
    fig = photo_tasks_figure("coffee")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 1 + len(TASKS) and 'classification: "cup"' in titles[1]
    assert len(fig.axes[3].patches) == 2                                # two boxes
    assert fig.axes[2].get_legend() is not None
