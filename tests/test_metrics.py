"""Box IoU, the GIoU loss and mean average precision (against pycocotools for COCO's AP)."""

import contextlib
import io

import numpy as np
import pytest

from trainers.metrics import COCO_IOU_THRESHOLDS, MeanBoxIoU, box_iou, giou_loss, mean_average_precision


def test_box_iou_and_the_metric():
    true = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.2, 0.2]], np.float32)
    pred = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 1.0], [0.5, 0.5, 0.6, 0.6]], np.float32)
    np.testing.assert_allclose(np.asarray(box_iou(true, pred)), [1.0, 0.5, 0.0], atol=1e-6)
    metric = MeanBoxIoU()
    metric.update_state(true[:2], pred[:2])
    metric.update_state(true[2:], pred[2:])
    assert float(metric.result()) == pytest.approx(0.5, abs=1e-6)
    assert MeanBoxIoU.from_config(metric.get_config()).name == "iou"


def test_giou_loss_is_zero_for_equal_boxes_and_grows_with_distance_when_they_do_not_overlap():
    true = np.array([[0.1, 0.1, 0.3, 0.3]] * 3, np.float32)
    pred = np.array([[0.1, 0.1, 0.3, 0.3], [0.4, 0.4, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9]], np.float32)
    loss = np.asarray(giou_loss(true, pred))
    assert loss[0] == pytest.approx(0.0, abs=1e-6)
    assert loss[1] < loss[2]  # IoU is 0 for both: GIoU tells them apart
    # [0.1, 0.3] and [0.4, 0.6] squared: union 0.08, enclosing box 0.25: GIoU = 0 - 0.17 / 0.25;
    # plus the L1 distance, 0.3 on each coordinate.
    assert loss[1] == pytest.approx(1 + 0.17 / 0.25 + 0.3, abs=1e-6)


def test_giou_loss_moves_a_box_of_no_area_as_a_fresh_sigmoid_head_predicts():
    import tensorflow as tf

    point = tf.Variable([[0.5, 0.5, 0.5, 0.5]])  # sigmoid(0) everywhere
    with tf.GradientTape() as tape:
        loss = giou_loss(tf.constant([[0.2, 0.2, 0.6, 0.6]]), point)
    gradient = tape.gradient(loss, point).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).sum() > 0


def one_class(boxes, scores, truth):
    ground_truth = [{"boxes": np.array(truth), "classes": np.zeros(len(truth), int)}]
    detections = [{"boxes": np.array(boxes), "classes": np.zeros(len(boxes), int), "scores": np.array(scores)}]
    return ground_truth, detections


def test_voc_11_point_and_all_point_by_hand():
    # Two objects; detections by score: a hit, a miss, a hit -> precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    a, b, elsewhere = [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.0, 0.6, 0.2, 0.9]
    ground_truth, detections = one_class([a, elsewhere, b], [0.9, 0.8, 0.7], [a, b])
    voc07 = mean_average_precision(ground_truth, detections, recall_points=11)
    assert voc07.mean == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    np.testing.assert_allclose(voc07.precision[0], [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(voc07.recall[0], [1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(voc07.interpolated[0], [1] * 6 + [2 / 3] * 5)  # the seed's max precisions
    voc10 = mean_average_precision(ground_truth, detections, recall_points=None)
    assert voc10.mean == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # A duplicate of a matched detection is a false positive; a class with no detection has AP 0.
    ground_truth[0]["classes"] = np.array([0, 1])
    duplicate = mean_average_precision(
        ground_truth,
        [{"boxes": np.array([a, a]), "classes": np.array([0, 0]), "scores": np.array([0.9, 0.8])}],
        recall_points=None,
    )
    assert duplicate.per_class == {0: 1.0, 1: 0.0} and duplicate.mean == 0.5


def random_case(rng):
    """Images with 0-4 objects of 4 classes, detections near them (jittered, duplicated) and not."""
    ground_truth, detections = [], []
    for _ in range(rng.integers(1, 7)):
        n = rng.integers(0, 5)
        corner = rng.uniform(0, 0.6, (n, 2))
        size = rng.uniform(0.05, 0.4, (n, 2))
        boxes = np.concatenate([corner, corner + size], axis=1)
        classes = rng.integers(0, 3, n)  # class 3 never has ground truth
        ground_truth.append({"boxes": boxes, "classes": classes})
        found_boxes, found_classes = [], []
        for box, label in zip(boxes, classes):
            for _ in range(rng.integers(0, 3)):  # 0, 1 or 2 (a duplicate) detections per object
                moved = np.clip(box + rng.normal(0, 0.03, 4), 0, 1)
                found_boxes.append(np.concatenate([np.minimum(moved[:2], moved[2:]), np.maximum(moved[:2], moved[2:])]))
                found_classes.append(label if rng.uniform() < 0.85 else rng.integers(0, 4))
        for _ in range(rng.integers(0, 3)):  # detections of nothing
            corner = rng.uniform(0, 0.7, 2)
            found_boxes.append(np.concatenate([corner, corner + rng.uniform(0.05, 0.3, 2)]))
            found_classes.append(rng.integers(0, 4))
        detections.append(
            {
                "boxes": np.array(found_boxes).reshape(-1, 4),
                "classes": np.array(found_classes, int),
                "scores": rng.uniform(0, 1, len(found_boxes)),
            }
        )
    return ground_truth, detections


def coco_stats(ground_truth, detections):
    """pycocotools' AP@[.5:.95] and AP@.5 (area all, 100 detections)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):  # normalized [ymin, xmin, ymax, xmax] -> COCO pixels on a 1000x1000 image
        ymin, xmin, ymax, xmax = (1000 * np.asarray(box, np.float64)).tolist()
        return [xmin, ymin, xmax - xmin, ymax - ymin]

    annotations, results = [], []
    for image_id, (truth, found) in enumerate(zip(ground_truth, detections), start=1):
        for box, label in zip(truth["boxes"], truth["classes"]):
            bbox = xywh(box)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=int(label) + 1,
                    bbox=bbox,
                    area=bbox[2] * bbox[3],
                    iscrowd=0,
                )
            )
        for box, label, score in zip(found["boxes"], found["classes"], found["scores"]):
            results.append(dict(image_id=image_id, category_id=int(label) + 1, bbox=xywh(box), score=float(score)))
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dict(
            images=[dict(id=i, width=1000, height=1000) for i in range(1, len(ground_truth) + 1)],
            annotations=annotations,
            categories=[dict(id=c) for c in range(1, 5)],
        )
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results) if results else COCO(), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0], evaluation.stats[1]


def test_coco_ap_agrees_with_pycocotools_on_random_cases():
    pytest.importorskip("pycocotools", reason="pycocotools is a test dependency (pip install .[test])")
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 40:
        ground_truth, detections = random_case(rng)
        if not any(len(t["classes"]) for t in ground_truth) or not any(len(d["scores"]) for d in detections):
            continue
        coco, coco50 = coco_stats(ground_truth, detections)
        ours = mean_average_precision(ground_truth, detections, iou_thresholds=COCO_IOU_THRESHOLDS, recall_points=101)
        ours50 = mean_average_precision(ground_truth, detections, iou_thresholds=(0.5,), recall_points=101)
        assert ours.mean == pytest.approx(coco, abs=1e-6), (checked, ours.per_class)
        assert ours50.mean == pytest.approx(coco50, abs=1e-6), checked
        checked += 1


def test_a_tie_goes_to_the_last_true_box_as_in_pycocotools():
    # The first detection overlaps two true boxes equally (IoU 1/3). pycocotools gives it the last
    # one, which leaves the first to the second detection: two hits. The first box would leave one.
    truth = [{"boxes": [[0, 0, 1, 0.5], [0, 0.5, 1, 1]], "classes": [0, 0]}]
    found = [{"boxes": [[0, 0.25, 1, 0.75], [0, 0, 1, 0.5]], "classes": [0, 0], "scores": [0.9, 0.8]}]
    result = mean_average_precision(truth, found, iou_thresholds=(0.3,), recall_points=None)
    np.testing.assert_allclose(result.recall[0], [0.5, 1.0])
    np.testing.assert_allclose(result.precision[0], [1.0, 1.0])
    assert result.mean == pytest.approx(1.0)


@pytest.mark.parametrize(
    "ground_truth, detections, kwargs, message",
    [
        ([{"boxes": [[0, 0, 1, 1]], "classes": [0]}], [], {}, r"one entry per image, received 1 and 0"),
        ([{"boxes": [0, 0, 1, 1], "classes": [0]}], [{}], {}, r"ground_truth\[0\]\['boxes'\] must have shape \(N, 4\)"),
        (
            [{"boxes": [[0, 0, 1, 1]], "classes": [0, 1]}],
            [{"boxes": [], "classes": [], "scores": []}],
            {},
            r"ground_truth\[0\] has 1 boxes but 2 classes",
        ),
        (
            [{"boxes": [[0, 0, 1, 1]], "classes": [0]}],
            [{"boxes": [[0, 0, 1, 1]], "classes": [0]}],
            {},
            r"detections\[0\] must be a dict with 'scores'",
        ),
        (
            [{"boxes": [[0, 0, 1, 1]], "classes": [0]}],
            [{"boxes": [[0, 0, 1, 1]], "classes": [0], "scores": [0.5, 0.2]}],
            {},
            r"detections\[0\] has 1 boxes, 1 classes and 2 scores",
        ),
        ([], [], {"recall_points": 7}, r"recall_points must be 11, 101 or None, received 7"),
        ([], [], {"iou_thresholds": (0.5, 1.5)}, r"iou_thresholds must be numbers in \(0, 1\]"),
    ],
)
def test_bad_arguments_name_the_argument(ground_truth, detections, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mean_average_precision(ground_truth, detections, **kwargs)


# ------------------------------------------------------------------------------ the class report


def test_the_class_report_agrees_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (the figures extra) checks the report")
    from trainers.metrics import classification_report, format_report, top_k_accuracy

    rng = np.random.default_rng(1)
    names = [f"c{i}" for i in range(7)]
    truth = rng.integers(0, 6, size=200)  # class c6 never present
    scores = rng.random((200, 7)).astype("float32")
    scores[np.arange(200), truth] += rng.random(200) * 0.8  # better than chance
    predicted = scores.argmax(axis=1)
    report = classification_report(truth, scores, names)
    np.testing.assert_array_equal(
        report["confusion_matrix"], metrics.confusion_matrix(truth, predicted, labels=range(7))
    )
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predicted, labels=range(7), zero_division=0
    )
    for i, name in enumerate(names):
        row = report["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i])
        ), name
    # The macro F1 over the classes present (scikit-learn's labels=present).
    assert report["macro_f1"] == pytest.approx(metrics.f1_score(truth, predicted, labels=range(6), average="macro"))
    assert report["top5_accuracy"] == pytest.approx(metrics.top_k_accuracy_score(truth, scores, k=5, labels=range(7)))
    assert top_k_accuracy(truth, scores, 1) == pytest.approx(np.mean(predicted == truth))
    # Five classes or fewer: top-5 would always be right, so it is left out.
    assert "top5_accuracy" not in classification_report(truth % 5, scores[:, :5], names[:5])
    printed = format_report(report).splitlines()
    assert printed[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert printed[1].split()[0] == "c0" and int(printed[1].split()[-1]) == support[0]
    assert [int(v) for v in printed[-7].split()[1:]] == report["confusion_matrix"][0]
    with pytest.raises(ValueError, match="7 class scores per example but 6 class names"):
        classification_report(truth, scores, names[:6])


def test_the_confusion_image_is_row_normalized():
    from trainers.metrics import confusion_image

    image = confusion_image([[3, 1], [0, 0]], cell=4)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() != image[0, 4].tolist()  # 75% darker than 25%
    assert image[4, 0].tolist() == [255, 255, 255]  # a class with no example is blank
    assert (image[0, 0] < image[0, 4]).all()
