"""Box metrics, in one place: mean box IoU (a Keras metric), the GIoU loss, and mean average
precision over detections (PASCAL VOC 2007's 11 points, VOC 2010+'s all points, COCO's 101).

Boxes are normalized ``[ymin, xmin, ymax, xmax]`` throughout, as everywhere in the project.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import keras
import numpy as np

COCO_IOU_THRESHOLDS = tuple(np.round(np.linspace(0.5, 0.95, 10), 2))


# --------------------------------------------------------------------------------------- training


def _areas_and_overlap(y_true, y_pred):
    ops = keras.ops
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    height = ops.maximum(ops.minimum(y_true[..., 2], y_pred[..., 2]) - ops.maximum(y_true[..., 0], y_pred[..., 0]), 0)
    width = ops.maximum(ops.minimum(y_true[..., 3], y_pred[..., 3]) - ops.maximum(y_true[..., 1], y_pred[..., 1]), 0)

    def area(box):
        return ops.maximum(box[..., 2] - box[..., 0], 0) * ops.maximum(box[..., 3] - box[..., 1], 0)

    overlap = height * width
    union = area(y_true) + area(y_pred) - overlap
    return overlap, union, y_true, y_pred


def box_iou(y_true, y_pred):
    """IoU of each box of ``y_true`` with the box of ``y_pred`` at the same index (not pairwise)."""
    overlap, union, _, _ = _areas_and_overlap(y_true, y_pred)
    return overlap / keras.ops.maximum(union, keras.config.epsilon())


@keras.saving.register_keras_serializable(package="zoo")
class MeanBoxIoU(keras.metrics.Mean):
    """The mean IoU of predicted and true boxes, one pair per example (a localize head's output)."""

    def __init__(self, name="iou", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(box_iou(y_true, y_pred), sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="zoo")
def giou_loss(y_true, y_pred):
    """1 - generalized IoU (Rezatofighi et al., 2019), plus the mean L1 distance of the coordinates.

    GIoU, unlike IoU, still has a gradient when the boxes do not overlap (the empty part of the box
    enclosing both is penalized), but not for a box of no area: and a sigmoid box head starts with
    every coordinate at 0.5, a point. The L1 term (as DETR pairs them) moves such a box; once boxes
    overlap, GIoU dominates.
    """
    ops = keras.ops
    distance = ops.mean(ops.abs(ops.cast(y_true, "float32") - ops.cast(y_pred, "float32")), axis=-1)
    # Coordinates predicted in the wrong order are read as the box they span: an inverted box has
    # no area and no gradient towards one, and a head stuck there would never learn.
    y_pred = ops.cast(y_pred, "float32")
    y_pred = ops.concatenate(
        [ops.minimum(y_pred[..., :2], y_pred[..., 2:]), ops.maximum(y_pred[..., :2], y_pred[..., 2:])], axis=-1
    )
    overlap, union, y_true, y_pred = _areas_and_overlap(y_true, y_pred)
    epsilon = keras.config.epsilon()
    iou = overlap / ops.maximum(union, epsilon)
    enclosing = (ops.maximum(y_true[..., 2], y_pred[..., 2]) - ops.minimum(y_true[..., 0], y_pred[..., 0])) * (
        ops.maximum(y_true[..., 3], y_pred[..., 3]) - ops.minimum(y_true[..., 1], y_pred[..., 1])
    )
    giou = iou - (enclosing - union) / ops.maximum(enclosing, epsilon)
    return 1.0 - giou + distance


BOX_LOSSES = {"mse": "mse", "giou": giou_loss}


def _soft_labels(y_true, y_pred) -> bool:
    """Whether ``y_true`` holds class probabilities (mixup, cutmix) rather than class ids: it has
    the predictions' static shape, more than one class wide. Decided when the step is traced, so
    one compiled model trains on mixed labels and validates on class ids."""
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    return len(true_shape) == len(pred_shape) and true_shape[-1] == pred_shape[-1] and (pred_shape[-1] or 0) > 1


def _as_probabilities(y_true, y_pred):
    ops = keras.ops
    if _soft_labels(y_true, y_pred):
        return ops.cast(y_true, y_pred.dtype)
    return ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(y_pred)[-1], dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package="trainers")
class SparseCrossentropyWithSmoothing(keras.losses.Loss):
    """Categorical cross-entropy (with ``label_smoothing``) on class ids or class probabilities.

    Class ids (the pipelines' labels) are one-hot encoded, which Keras's sparse loss has no
    smoothing for; the class probabilities of mixup and cutmix are taken as they are, so one
    compiled model trains on mixed labels and validates on ids.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = _as_probabilities(y_true, y_pred)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _class_ids(y_true, y_pred):
    """Class ids as they are, or the most likely class of class probabilities (the larger share
    of a mixed example, as timm counts accuracy on mixed labels), flat."""
    ops = keras.ops
    if _soft_labels(y_true, y_pred):
        y_true = ops.argmax(y_true, axis=-1)
    return ops.reshape(y_true, (-1,))


@keras.saving.register_keras_serializable(package="trainers")
def class_accuracy(y_true, y_pred):
    """Accuracy on class ids or class probabilities (`_class_ids`)."""
    return keras.metrics.sparse_categorical_accuracy(_class_ids(y_true, y_pred), y_pred)


@keras.saving.register_keras_serializable(package="trainers")
def class_top5_accuracy(y_true, y_pred):
    """`class_accuracy`'s top-5: the true (or most likely) class among the five highest scores."""
    return keras.metrics.sparse_top_k_categorical_accuracy(_class_ids(y_true, y_pred), y_pred, k=5)


# --------------------------------------------------------------------------------------- mAP


@dataclasses.dataclass
class APResult:
    """What `mean_average_precision` returns."""

    mean: float  # the mean of ``per_class`` (classes with ground truth), over the IoU thresholds
    per_class: dict[int, float]  # AP of each class with ground truth
    # Each class's precision/recall points at the first IoU threshold, by decreasing score:
    precision: dict[int, np.ndarray]
    recall: dict[int, np.ndarray]
    # The interpolated precision at each recall point (11 or 101 of them; the envelope for None).
    interpolated: dict[int, np.ndarray]


def _pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """[len(boxes1), len(boxes2)] IoUs, in float64 (exact enough to agree with pycocotools)."""
    top = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    left = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    bottom = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    right = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    overlap = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    # An inverted box (a regression head can predict ymin > ymax) has no area.
    area1 = np.clip(boxes1[:, 2] - boxes1[:, 0], 0, None) * np.clip(boxes1[:, 3] - boxes1[:, 1], 0, None)
    area2 = np.clip(boxes2[:, 2] - boxes2[:, 0], 0, None) * np.clip(boxes2[:, 3] - boxes2[:, 1], 0, None)
    union = area1[:, None] + area2[None, :] - overlap
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, overlap / union, 0.0)


def _array(image: Mapping, key: str, index: int, argument: str, shape_tail: tuple, dtype) -> np.ndarray:
    if not isinstance(image, Mapping) or key not in image:
        raise ValueError(f"{argument}[{index}] must be a dict with {key!r}, received {type(image).__name__}")
    value = np.asarray(image[key], dtype=dtype)
    if value.size == 0:
        value = value.reshape((0, *shape_tail))
    if value.ndim != 1 + len(shape_tail) or value.shape[1:] != shape_tail:
        raise ValueError(
            f"{argument}[{index}][{key!r}] must have shape (N{''.join(f', {d}' for d in shape_tail)}), "
            f"received {value.shape}"
        )
    return value


def _checked(ground_truth, detections):
    if len(ground_truth) != len(detections):
        raise ValueError(
            f"ground_truth and detections must hold one entry per image, received {len(ground_truth)} and "
            f"{len(detections)}"
        )
    images = []
    for index, (truth, found) in enumerate(zip(ground_truth, detections)):
        true_boxes = _array(truth, "boxes", index, "ground_truth", (4,), np.float64)
        true_classes = _array(truth, "classes", index, "ground_truth", (), np.int64)
        boxes = _array(found, "boxes", index, "detections", (4,), np.float64)
        classes = _array(found, "classes", index, "detections", (), np.int64)
        scores = _array(found, "scores", index, "detections", (), np.float64)
        if len(true_boxes) != len(true_classes):
            raise ValueError(f"ground_truth[{index}] has {len(true_boxes)} boxes but {len(true_classes)} classes")
        if not len(boxes) == len(classes) == len(scores):
            raise ValueError(
                f"detections[{index}] has {len(boxes)} boxes, {len(classes)} classes and {len(scores)} scores"
            )
        images.append((true_boxes, true_classes, boxes, classes, scores))
    return images


def _match(true_boxes, boxes, threshold):
    """COCO's greedy matching in one image and class: detections by decreasing score, each taking
    the unmatched ground truth it overlaps most, if at least ``threshold``. True where matched."""
    matched = np.zeros(len(boxes), bool)
    if len(true_boxes) == 0 or len(boxes) == 0:
        return matched
    ious = _pairwise_iou(boxes, true_boxes)
    taken = np.zeros(len(true_boxes), bool)
    threshold = min(threshold, 1 - 1e-10)
    for d in range(len(boxes)):
        best, best_iou = -1, threshold
        for g in range(len(true_boxes)):  # of equal overlaps the last wins, as in pycocotools
            if not taken[g] and ious[d, g] >= best_iou:
                best, best_iou = g, ious[d, g]
        if best >= 0:
            taken[best] = matched[d] = True
    return matched


def interpolated_precisions(precision, recall, recall_points: int | None = 11) -> np.ndarray:
    """The interpolated ("maximum") precisions that average precision averages.

    ``precision`` and ``recall`` are one precision/recall curve, point by point, recall not
    decreasing. For ``recall_points=11`` (PASCAL VOC 2007, the chapter's), the precision at each
    recall 0, 0.1, ..., 1 is the largest precision at that recall or above (0 where the curve
    never gets there); 101 is COCO's sampling of the same envelope; ``None`` returns the envelope
    at every point of the curve (VOC 2010+). The chapter's hand-made example::

        interpolated_precisions([0.91, 0.94, 0.96, 0.94, 0.95, 0.92, 0.80, 0.60, 0.45, 0.20, 0.10],
                                np.linspace(0, 1, 11)).mean()  # 0.7136, the mAP
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(
            f"precision and recall must be 1-D and of one length, received shapes {precision.shape} and {recall.shape}"
        )
    if recall_points not in (None, 11, 101):
        raise ValueError(f"recall_points must be 11, 101 or None, received {recall_points!r}")
    if recall_points is None:  # VOC 2010+: the best precision at any higher recall, at each point
        return np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    thresholds = np.linspace(0.0, 1.0, recall_points)
    if recall_points == 101:  # COCO: the envelope sampled where recall first reaches each point
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        where = np.searchsorted(recall, thresholds, side="left")
        return np.array([envelope[i] if i < len(envelope) else 0.0 for i in where])
    # VOC 2007: the best precision at any recall >= each point
    return np.array([precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in thresholds])


def _average_precision(precision, recall, recall_points):
    """AP of one precision/recall curve, and the interpolated precisions it averages."""
    interpolated = interpolated_precisions(precision, recall, recall_points)
    if recall_points is None:  # VOC 2010+: the area under the precision envelope
        envelope = np.concatenate([[0.0], interpolated, [0.0]])
        steps = np.concatenate([[0.0], recall, [1.0]])
        changes = np.flatnonzero(steps[1:] != steps[:-1])
        return float(np.sum((steps[changes + 1] - steps[changes]) * envelope[changes + 1])), interpolated
    return float(interpolated.mean()), interpolated


def mean_average_precision(
    ground_truth: Sequence[Mapping],
    detections: Sequence[Mapping],
    *,
    iou_thresholds: Sequence[float] = (0.5,),
    recall_points: int | None = 11,
    max_detections: int = 100,
) -> APResult:
    """Mean average precision of ``detections`` against ``ground_truth``, over per-image lists.

    Args:
      ground_truth: one dict per image: ``boxes`` [N, 4] and ``classes`` [N] (N may be 0).
      detections: one dict per image: ``boxes`` [M, 4], ``classes`` [M], ``scores`` [M].
      iou_thresholds: a detection counts only if its IoU with an unmatched true box of its class
        is at least this; AP is averaged over the thresholds (COCO: `COCO_IOU_THRESHOLDS`).
      recall_points: 11 (PASCAL VOC 2007, the seed's ``maximum_precisions``), None (VOC 2010+:
        the whole area under the precision envelope) or 101 (COCO).
      max_detections: per image and class, the highest-scoring detections kept (COCO: 100).

    Detections are matched as COCO does (by decreasing score, each to the unmatched true box it
    overlaps most). With ``recall_points=101`` and `COCO_IOU_THRESHOLDS` the result is COCO's AP
    (area "all", 100 detections), as pycocotools computes it. Classes without ground truth have
    no AP and are left out of the mean; a class with ground truth and no detection has AP 0.
    """
    if recall_points not in (None, 11, 101):
        raise ValueError(f"recall_points must be 11, 101 or None, received {recall_points!r}")
    thresholds = [float(t) for t in np.atleast_1d(iou_thresholds)]
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        raise ValueError(f"iou_thresholds must be numbers in (0, 1], received {iou_thresholds!r}")
    images = _checked(ground_truth, detections)
    classes = sorted({int(c) for truth in images for c in truth[1]})
    per_class, precisions, recalls, interpolated = {}, {}, {}, {}
    for label in classes:
        aps = []
        for t_index, threshold in enumerate(thresholds):
            scores, hits, positives = [], [], 0
            for true_boxes, true_classes, boxes, found_classes, found_scores in images:
                truth = true_boxes[true_classes == label]
                positives += len(truth)
                mine = np.flatnonzero(found_classes == label)
                mine = mine[np.argsort(-found_scores[mine], kind="mergesort")][:max_detections]
                scores.append(found_scores[mine])
                hits.append(_match(truth, boxes[mine], threshold))
            scores, hits = np.concatenate(scores), np.concatenate(hits)
            order = np.argsort(-scores, kind="mergesort")
            true_positives = np.cumsum(hits[order])
            false_positives = np.cumsum(~hits[order])
            recall = true_positives / positives
            precision = true_positives / np.maximum(true_positives + false_positives, np.finfo(np.float64).eps)
            ap, points = _average_precision(precision, recall, recall_points)
            aps.append(ap)
            if t_index == 0:
                precisions[label], recalls[label], interpolated[label] = precision, recall, points
        per_class[label] = float(np.mean(aps))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return APResult(mean, per_class, precisions, recalls, interpolated)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """A model's outputs on a split, beside the truth, from one pass (`predict_split`)."""

    true_classes: np.ndarray  # (N,) class ids
    probabilities: np.ndarray  # (N, classes)
    true_boxes: np.ndarray | None = None  # (N, 4), localize only
    boxes: np.ndarray | None = None  # (N, 4), localize only


def predict_split(model, dataset, max_batches: int | None = None) -> Predictions:
    """One pass of ``model`` over batches of ``(images, labels)`` or ``(images, {"class", "bbox"})``."""
    true_classes, probabilities, true_boxes, boxes = [], [], [], []
    for index, (images, targets) in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        predicted = model(images, training=False)  # the whole batch, whatever the strategy
        if isinstance(predicted, dict):
            probabilities.append(np.asarray(predicted["class"]))
            boxes.append(np.asarray(predicted["bbox"]))
            true_classes.append(np.asarray(targets["class"]).reshape(-1))
            true_boxes.append(np.asarray(targets["bbox"]))
        else:
            probabilities.append(np.asarray(predicted))
            true_classes.append(np.asarray(targets).reshape(-1))
    if not probabilities:
        raise ValueError("the split gave no batch to predict")
    return Predictions(
        np.concatenate(true_classes).astype(np.int64),
        np.concatenate(probabilities).astype(np.float32),
        np.concatenate(true_boxes) if true_boxes else None,
        np.concatenate(boxes) if boxes else None,
    )


def detections(predictions: Predictions):
    """``(ground_truth, detections)`` for `mean_average_precision` from a class + box model's
    `Predictions`: one object per image, and one detection (the predicted box, labelled with the
    top class, whose probability is its score)."""
    truth, found = [], []
    for i, probabilities in enumerate(predictions.probabilities):
        truth.append({"boxes": predictions.true_boxes[i : i + 1], "classes": predictions.true_classes[i : i + 1]})
        top = int(np.argmax(probabilities))
        found.append({"boxes": predictions.boxes[i : i + 1], "classes": [top], "scores": [float(probabilities[top])]})
    return truth, found


def single_object_detections(model, dataset, max_batches: int | None = None):
    """`detections` of ``model`` on batches of ``(images, {"class", "bbox"})``."""
    return detections(predict_split(model, dataset, max_batches))


def localization_scores(predictions: Predictions) -> dict[str, float]:
    """``map_50`` (VOC 2007's 11-point AP at IoU 0.5) and ``map_coco`` (COCO's AP over IoU
    0.50:0.05:0.95) of `detections`."""
    truth, found = detections(predictions)
    voc = mean_average_precision(truth, found, iou_thresholds=(0.5,), recall_points=11)
    coco = mean_average_precision(truth, found, iou_thresholds=COCO_IOU_THRESHOLDS, recall_points=101)
    return {"map_50": voc.mean, "map_coco": coco.mean}


# ------------------------------------------------------------------------------ the class report


def top_k_accuracy(true_classes, probabilities, k: int = 5) -> float:
    """The share of examples whose true class is among the ``k`` highest scores."""
    top = np.argsort(-np.asarray(probabilities), axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(true_classes)[:, None], axis=1)))


def confusion_matrix(true_classes, predicted_classes, num_classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    true_classes, predicted_classes = np.asarray(true_classes), np.asarray(predicted_classes)
    cells = true_classes * num_classes + predicted_classes
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(true_classes, probabilities, class_names) -> dict:
    """What a practitioner reads after training, as JSON: top-5 accuracy (more than 5 classes),
    each class's precision, recall, F1 and support, their macro average, and the confusion matrix
    (rows: true class, columns: predicted). A class never predicted has precision 0, one never
    present recall 0 (scikit-learn's ``zero_division=0``)."""
    probabilities = np.asarray(probabilities)
    names = list(class_names)
    if probabilities.shape[1] != len(names):
        raise ValueError(f"{probabilities.shape[1]} class scores per example but {len(names)} class names")
    matrix = confusion_matrix(true_classes, probabilities.argmax(axis=1), len(names))
    hits = np.diag(matrix).astype(float)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    report = {
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "confusion_matrix": matrix.tolist(),
        "class_names": names,
    }
    if len(names) > 5:
        report["top5_accuracy"] = top_k_accuracy(true_classes, probabilities, 5)
    return report


def format_report(report: dict) -> str:
    """`classification_report` as the terminal shows it: a table per class, then the matrix."""
    names = report["class_names"]
    width = max(12, *(len(name) for name in names))
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f} {row['support']:>8d}"
        )
    lines.append(f"{'macro f1':<{width}} {'':>9} {'':>7} {report['macro_f1']:>7.3f}")
    if "top5_accuracy" in report:
        lines.append(f"{'top-5 accuracy':<{width}} {report['top5_accuracy']:>9.3f}")
    matrix = np.asarray(report["confusion_matrix"])
    cell = max(5, len(str(matrix.max())) + 1)
    lines.append(f"confusion matrix (rows: true class, columns: predicted, in the order above; {len(names)} classes)")
    for name, row in zip(names, matrix):
        lines.append(f"{name:<{width}} " + "".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)


def row_shares(matrix) -> np.ndarray:
    """The confusion matrix with each row divided by its class's support (0 for an absent class)."""
    matrix = np.asarray(matrix, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)


def confusion_image(matrix, cell: int = 16) -> np.ndarray:
    """The confusion matrix as an RGB uint8 picture for TensorBoard: each row normalized by its
    class's support, white (none) to dark blue (all), ``cell`` pixels a cell."""
    share = row_shares(matrix)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    image = white + share[..., None] * (blue - white)
    return np.kron(image, np.ones((cell, cell, 1))).astype(np.uint8)
