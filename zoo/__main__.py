"""`python -m zoo [NAME ...]`: build registered models and print their summaries and sizes.

`python -m zoo NAME --layers` lists the backbone's layers with their index, trainable weights and
output shape: the names `--unfreeze_from` accepts (the seed lists Xception's 132 the same way).

Each model is built at its usual input size (224x224x3; 28x28x1 for fashion_cnn) with random
weights: nothing is downloaded.
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This program's flags; defined when it runs, so importing the module defines nothing."""
    from zoo.common import HEADS

    flags.DEFINE_integer("num_classes", 10, "Classes of the head.", lower_bound=2)
    flags.DEFINE_enum("head", "classify", list(HEADS), "Head to put on the backbone.")
    flags.DEFINE_boolean("summary", True, "Print each model's layer summary.")
    flags.DEFINE_boolean("layers", False, "List the backbone's layers (index, name, type), for --unfreeze_from.")


USUAL_INPUT = {"fashion_cnn": (28, 28, 1)}
DEFAULT_INPUT = (224, 224, 3)


def main(argv):
    import zoo

    requested = argv[1:] or zoo.names()
    rows = []
    for name in requested:
        try:
            model = zoo.build(
                name,
                num_classes=FLAGS.num_classes,
                input_shape=USUAL_INPUT.get(name, DEFAULT_INPUT),
                head=FLAGS.head,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if FLAGS.layers:
            print_backbone_layers(name, model)
            continue
        if FLAGS.summary:
            model.summary(expand_nested=False)
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        rows.append((name, model.input_shape[1:], model.count_params(), trainable, zoo.spec(name).summary))
    if not rows:
        return 0
    print(f"\n{'model':<12} {'input':<15} {'parameters':>12} {'trainable':>12}  description")
    for name, shape, total, trainable, summary in rows:
        print(f"{name:<12} {str(shape):<15} {total:>12,} {trainable:>12,}  {summary}")
    return 0


def print_backbone_layers(name, model) -> None:
    import zoo

    layers = zoo.backbone_of(model).layers
    print(f"backbone of {name}: {len(layers)} layers (train from one on with --unfreeze_from=NAME)")
    print(f"{'index':>5}  {'name':<28} {'type':<22} {'parameters':>10}  output")
    for index, layer in enumerate(layers):
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape[1:]) if shape is not None and hasattr(shape, "shape") else ""
        print(f"{index:>5}  {layer.name:<28} {type(layer).__name__:<22} {layer.count_params():>10,}  {shape}")


if __name__ == "__main__":
    from zoo import compat

    compat.start_tensorflow_quietly()
    define_flags()
    app.run(main)
